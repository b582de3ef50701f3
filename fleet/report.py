"""`fleet plan`'s two formats: the JSON contract other tools read, and a table for people."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from fleet.harness import RecordedResource, Rendering, redact


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str
    enforcement: str  # advisory | mandatory


@dataclass
class PolicyResult:
    evaluated: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "mandatory"]


def plan_document(rendering: Rendering, policy: PolicyResult) -> dict[str, Any]:
    """The JSON contract: stack, project, resources, outputs, policy, budgets; secrets as "[secret]".

    Deterministic: resources in the order the program declares them, maps (outputs, budgets) by key.
    """
    root = rendering.project_dir
    outputs = _sorted(redact(rendering.outputs, root))
    return {
        "stack": rendering.stack,
        "project": rendering.project,
        "resources": [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "physicalName": r.physical_name,
                "parent": r.parent,
                "provider": r.provider,
                "options": r.options.as_dict(),
                "inputs": redact(r.inputs, root),
            }
            for r in rendering.resources
        ],
        "outputs": {k: v for k, v in outputs.items() if k != "budgets"},
        "policy": {
            "evaluated": policy.evaluated,
            "violations": [
                {"policy": v.policy, "urn": v.urn, "message": v.message, "enforcement": v.enforcement}
                for v in policy.violations
            ],
        },
        "budgets": outputs.get("budgets") or {},
    }


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def plan_json(rendering: Rendering, policy: PolicyResult) -> str:
    return json.dumps(plan_document(rendering, policy), indent=2, sort_keys=False) + "\n"


def _short(urn: str | None) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "-"


def _details(resource: RecordedResource) -> str:
    """What a person reviewing the plan needs beyond the logical name: the cloud's name, the options."""
    parts = []
    if resource.physical_name is not None and resource.physical_name != resource.name:
        parts.append(f"= {resource.physical_name}")
    for key, value in resource.options.as_dict().items():
        if key == "dependsOn":
            value = [_short(u) for u in value]
        parts.append(key if value is True else f"{key}={json.dumps(value)}")
    return f"  {'  '.join(parts)}" if parts else ""


def plan_table(rendering: Rendering, policy: PolicyResult) -> str:
    doc = plan_document(rendering, policy)
    groups: dict[str, list[RecordedResource]] = defaultdict(list)
    heads: dict[str, RecordedResource] = {}
    for r in rendering.resources:
        top = rendering.top_component(r)
        key = top.urn if top else ("" if r.custom else r.urn)
        if top is None and not r.custom:
            heads[r.urn] = r
            continue
        groups[key].append(r)
        if top is not None:
            heads[top.urn] = top

    lines = [f"{rendering.project}/{rendering.stack}: {len(rendering.resources)} resources", ""]
    for key in sorted(groups, key=lambda k: (k == "", k)):
        members = groups[key]
        if key:
            head = heads[key]
            providers = sorted({_short(m.provider) for m in members if m.provider})
            title = f"{head.name} ({head.type.rsplit(':', 1)[-1]})"
            lines.append(f"{title:<48} {', '.join(providers) or '-':<24} {len(members):>4}")
        else:
            lines.append(f"{'(top level)':<48} {'':<24} {len(members):>4}")
        for resource_type, count in sorted(Counter(m.type for m in members).items()):
            lines.append(f"  {count:>4}  {resource_type}")
            for m in (m for m in members if m.type == resource_type):
                lines.append(f"          {m.name}{_details(m)}")
        lines.append("")

    lines.append("Outputs")
    for key, value in doc["outputs"].items():
        lines.append(f"  {key:<20} {_shown_output(value)}")
    lines += ["", "Budgets"]
    for key, value in doc["budgets"].items():
        lines += _budget_lines(key, value, "  ")
    if not doc["budgets"]:
        lines.append("  (none declared)")
    lines += ["", f"Policy: {policy.evaluated} rules evaluated, {len(policy.violations)} violations"]
    for v in policy.violations:
        # The message is the rule's description, then what this resource does wrong (as the engine prints).
        description, _, detail = v.message.partition("\n")
        lines.append(f"  [{v.enforcement}] {v.policy}: {_short(v.urn)}")
        lines += [f"      {line}" for line in (detail or description).splitlines()]
    return "\n".join(lines) + "\n"


def _budget_lines(key: str, value: Any, indent: str) -> list[str]:
    """One line a budget; a budget given term by term (a `terms` list of best, typical and worst cases) as
    its totals, then one line a term with where its figure comes from; a group of such budgets nested."""
    if isinstance(value, dict) and isinstance(value.get("terms"), list):
        target = f"   target {value['targetSeconds']}" if "targetSeconds" in value else ""
        lines = [
            f"{indent}{key}: best {value['bestSeconds']} s, typical {value['typicalSeconds']} s, "
            f"worst {value['worstSeconds']} s{target}"
        ]
        for term in value["terms"]:
            figures = f"{term['best']}/{term['typical']}/{term['worst']}"
            lines.append(f"{indent}    {term['term']:<22} {figures:>11}  {term['source']}")
        return lines
    if isinstance(value, dict) and any(isinstance(v, dict) and "terms" in v for v in value.values()):
        lines = [f"{indent}{key}"]
        for inner, item in value.items():
            lines += _budget_lines(inner, item, indent + "  ")
        return lines
    return [f"{indent}{key:<20} {json.dumps(value)}"]


# A rendered document (a dashboard's JSON, a scrape config) is named in the table, not printed whole.
MAX_SHOWN_DOCUMENT_LINES = 1


def _shown_output(value: Any) -> str:
    if isinstance(value, str) and value.count("\n") > MAX_SHOWN_DOCUMENT_LINES:
        return f"({value.count(chr(10)) + 1} lines of text; --format json holds them)"
    return json.dumps(value)


def plan_summary(rendering: Rendering, policy: PolicyResult) -> str:
    """Three lines: how much was rendered, the budgets' names, and the policy's verdict (each violation)."""
    doc = plan_document(rendering, policy)
    lines = [
        f"{rendering.project}/{rendering.stack}: {len(rendering.resources)} resources rendered",
        f"budgets: {', '.join(doc['budgets']) or '(none declared)'}",
        f"policy: {policy.evaluated} rules evaluated, {len(policy.violations)} violations",
    ]
    lines += [f"  [{v.enforcement}] {v.policy}: {_short(v.urn)}" for v in policy.violations]
    return "\n".join(lines) + "\n"
