"""URNs are an API: a changed URN makes `pulumi up` replace (delete and recreate) the resource.

The URN lists of the shipped stacks are committed in tests/golden/. A resource keeps its URN in the state
when it is declared under it, or under a new one with an alias to it (as the engine resolves aliases, a
parent's included). A change that adds, removes or renames a resource without an alias must update the
list in the same commit, on purpose:

    FLEET_UPDATE_GOLDEN=1 uv run pytest tests/program/test_golden_urns.py
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from fleet.harness import STACK_TYPE, RecordedResource, Rendering

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _urn(rendering: Rendering, parent: str | None, type_: str, name: str) -> str:
    """resource.NewURN: the parent's qualified type chain (not the root stack's), `$`, the type."""
    if parent and f"::{STACK_TYPE}::" not in parent:
        type_ = f"{parent.split('::')[2]}${type_}"
    return f"urn:pulumi:{rendering.stack}::{rendering.project}::{type_}::{name}"


def alias_urns(rendering: Rendering) -> dict[str, list[str]]:
    """Each resource's aliases as URNs, as the engine's step generator expands them: its own alias specs
    (name and type default to its own, the parent to its current one), then, for every alias of its
    parent, itself and each of its own aliases under that parent (a child name that starts with the
    parent's name takes the aliased parent's name as its prefix)."""
    by_urn = {r.urn: r for r in rendering.resources}
    expanded: dict[str, list[str]] = {}

    def own(resource: RecordedResource, alias: dict) -> str:
        if "urn" in alias:
            return alias["urn"]
        spec = alias.get("spec", {})
        parent = None if spec.get("noParent") else (spec.get("parentUrn") or resource.parent)
        return _urn(rendering, parent, spec.get("type") or resource.type, spec.get("name") or resource.name)

    def under(parent_alias: str, parent: RecordedResource, type_: str, name: str) -> str:
        if name.startswith(parent.name):
            name = parent_alias.rsplit("::", 1)[1] + name[len(parent.name) :]
        return _urn(rendering, parent_alias, type_, name)

    def of(resource: RecordedResource) -> list[str]:
        if resource.urn in expanded:
            return expanded[resource.urn]
        found = [own(resource, alias) for alias in resource.options.aliases]
        parent = by_urn.get(resource.parent or "")
        if parent is not None:
            for parent_alias in of(parent):
                found.append(under(parent_alias, parent, resource.type, resource.name))
                for alias in found[: len(resource.options.aliases)]:
                    _, _, qualified, name = alias.split("::", 3)
                    found.append(under(parent_alias, parent, qualified.rsplit("$", 1)[-1], name))
        expanded[resource.urn] = list(dict.fromkeys(found))
        return expanded[resource.urn]

    return {r.urn: of(r) for r in rendering.resources}


@pytest.mark.parametrize("stack", ["dev", "prod", "k8s-example"])
def test_urns_match_the_committed_list(render, stack):
    rendering = render(stack)
    urns = sorted(r.urn for r in rendering.resources)
    path = GOLDEN / f"{stack}.urns"
    if os.environ.get("FLEET_UPDATE_GOLDEN") == "1":
        path.write_text("\n".join(urns) + "\n")
    committed = set(path.read_text().splitlines())
    aliases = alias_urns(rendering)
    # The committed URN each resource keeps: its own, or the one an alias carries it over from.
    kept = {urn: [u for u in [urn, *aliases[urn]] if u in committed] for urn in urns}
    added = sorted(urn for urn, found in kept.items() if not found)
    removed = sorted(committed - {u for found in kept.values() for u in found})
    assert not added and not removed, (
        f"{stack}: URNs changed (removed ones would be deleted by `pulumi up`).\n"
        f"added: {added}\nremoved: {removed}\n"
        "Keep them with `aliases`, or update tests/golden/ on purpose: "
        "FLEET_UPDATE_GOLDEN=1 uv run pytest tests/program/test_golden_urns.py"
    )
    assert len(urns) == len(set(urns)), "two resources share a URN: the engine would refuse the program"
    claimed = Counter(u for found in kept.values() for u in found)
    assert all(n == 1 for n in claimed.values()), f"two resources claim one URN: {claimed.most_common(3)}"
