"""URNs are an API: a changed URN makes `pulumi up` replace (delete and recreate) the resource.

The URN lists of the shipped stacks are committed in tests/golden/. A change that adds, removes or renames
a resource must update the list in the same commit, on purpose:

    FLEET_UPDATE_GOLDEN=1 uv run pytest tests/program/test_golden_urns.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.mark.parametrize("stack", ["dev", "prod", "k8s-example"])
def test_urns_match_the_committed_list(render, stack):
    urns = sorted(r.urn for r in render(stack).resources)
    path = GOLDEN / f"{stack}.urns"
    if os.environ.get("FLEET_UPDATE_GOLDEN") == "1":
        path.write_text("\n".join(urns) + "\n")
    committed = path.read_text().splitlines()
    added = sorted(set(urns) - set(committed))
    removed = sorted(set(committed) - set(urns))
    assert not added and not removed, (
        f"{stack}: URNs changed (removed ones would be deleted by `pulumi up`).\n"
        f"added: {added}\nremoved: {removed}\n"
        "Keep them with `aliases`, or update tests/golden/ on purpose: "
        "FLEET_UPDATE_GOLDEN=1 uv run pytest tests/program/test_golden_urns.py"
    )
    assert len(urns) == len(set(urns)), "two resources share a URN: the engine would refuse the program"
