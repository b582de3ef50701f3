"""How stack rules find the resources another resource points at (a bucket's public access block, a
cluster's parameter group).

The engine tells an analyzer which resources each property was computed from
(`property_dependencies`): that link holds even in a preview where the value itself (a new bucket's id)
is not known yet. Where no dependency is recorded, the value is matched against the candidates' ids,
names and ARNs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from policies.support import known


def identifiers(resource: PolicyResource) -> set[str]:
    """The values another resource may use to refer to this one."""
    found = {known(resource.props, key) for key in ("id", "arn", "name", "bucket")}
    return {value for value in found if isinstance(value, str) and value}


def referenced(
    resource: PolicyResource,
    prop: str,
    candidates: Iterable[PolicyResource],
    value: Any = None,
) -> list[PolicyResource]:
    """The candidates that `resource`'s property `prop` refers to.

    `value` is the referring value where it sits below `prop` (a nested launch template id); by default
    the property itself.
    """
    pool = list(candidates)
    dependencies = resource.property_dependencies.get(prop) or []
    if dependencies:
        urns = {d.urn for d in dependencies}
        return [c for c in pool if c.urn in urns]
    if value is None:
        value = known(resource.props, prop)
    if not isinstance(value, str) or not value:
        return []
    return [c for c in pool if value in identifiers(c)]


def of_types(resources: Iterable[PolicyResource], types: Iterable[str]) -> list[PolicyResource]:
    wanted = set(types)
    return [r for r in resources if r.resource_type in wanted]


def by_urn(resources: Iterable[PolicyResource]) -> Mapping[str, PolicyResource]:
    return {r.urn: r for r in resources}
