"""Go duration strings (`30s`, `10m`, `1h30m`), as Terraform-bridged providers read them (time.ParseDuration).

Plain Python: the policy pack and the render's mocks read them; neither loads a cloud SDK for it.
"""

from __future__ import annotations

import re

# An optional sign, then one or more decimal numbers each with a unit; or a bare 0.
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+|0")
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration string; None where time.ParseDuration would refuse it."""
    if not _GO_DURATION.fullmatch(text):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
