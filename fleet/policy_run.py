"""Offline policy run: the pack's rules applied to a rendering's recorded resources.

The pack in policies/ has no rules yet; until it does, every plan reports zero rules evaluated.
"""

from __future__ import annotations

from fleet.harness import Rendering
from fleet.report import PolicyResult


def evaluate(rendering: Rendering) -> PolicyResult:
    del rendering  # no rules to run yet
    return PolicyResult(evaluated=0)
