"""URNs are an API: a changed URN makes `pulumi up` replace (delete and recreate) the resource.

The URN lists of the shipped stacks are committed in tests/golden/. A change that adds, removes or renames
a resource must update the list in the same commit, on purpose:

    FLEET_UPDATE_GOLDEN=1 uv run pytest tests/program/test_golden_urns.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet.harness import Rendering

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def kept_urns(rendering: Rendering, committed: set[str]) -> dict[str, list[str]]:
    """Per resource, the committed URNs the engine would match it with (its own, or an alias's)."""
    return {r.urn: sorted(rendering.known_as(r) & committed) for r in rendering.resources}


@pytest.mark.parametrize("stack", ["dev", "prod", "k8s-example"])
def test_urns_match_the_committed_list(render, stack):
    rendering = render(stack)
    urns = sorted(r.urn for r in rendering.resources)
    path = GOLDEN / f"{stack}.urns"
    committed = set(path.read_text().splitlines())
    # A resource keeps a committed URN through its aliases (a renamed type, a new parent): the list holds
    # the URN a deployed stack knows it by, until the alias is dropped on purpose.
    kept = kept_urns(rendering, committed)
    if os.environ.get("FLEET_UPDATE_GOLDEN") == "1":
        path.write_text("\n".join(sorted(k[0] if k else urn for urn, k in kept.items())) + "\n")
        committed = set(path.read_text().splitlines())
        kept = kept_urns(rendering, committed)
    added = sorted(urn for urn, k in kept.items() if not k)
    removed = sorted(committed - {u for k in kept.values() for u in k})
    assert not added and not removed, (
        f"{stack}: URNs changed (removed ones would be deleted by `pulumi up`).\n"
        f"added: {added}\nremoved: {removed}\n"
        "Keep them with `aliases`, or update tests/golden/ on purpose: "
        "FLEET_UPDATE_GOLDEN=1 uv run pytest tests/program/test_golden_urns.py"
    )
    assert len(urns) == len(set(urns)), "two resources share a URN: the engine would refuse the program"
    assert all(len(k) <= 1 for k in kept.values()), "a resource claims two committed URNs"
