"""`fleet diff OLD NEW`: what changes between two renders, as `pulumi preview` would sort it.

Each side is a plan JSON file (`fleet plan --format json --out FILE`), a stack of this tree (`prod`), or a
stack at a git commit (`main:prod`, rendered from `git archive` of that commit in a temporary directory
with its own program and this environment). Resources are matched by URN without the stack (so two
stacks compare too) or through the new resource's aliases, and sorted into added, removed, updated and
replaced: a changed input that the provider cannot update in place (fleet/replacements.py), a property the
resource lists in `replaceOnChanges`, or a new provider replaces it. Protected resources that would be
deleted or replaced are called out: `pulumi up` refuses to delete them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.replacements import forces_replacement, known

SECRET = "[secret]"


class DiffError(ValueError):
    """A side cannot be read or rendered; the message is one line naming it."""


@dataclass(frozen=True)
class Side:
    label: str
    plan: dict[str, Any]


@dataclass
class Change:
    kind: str  # added | removed | updated | replaced
    type: str
    name: str
    protected: bool = False
    # Changed input paths, with the old and new value.
    paths: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # Why it is replaced (the paths or the reason), when it is.
    forcing: list[str] = field(default_factory=list)
    # Its type's replacement rules are not in the table: an update might be a replacement.
    unsure: bool = False
    # The old URN where the new one came to it through an alias.
    aliased_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.protected:
            doc["protected"] = True
        if self.paths:
            doc["changes"] = {p: {"old": old, "new": new} for p, (old, new) in self.paths.items()}
        if self.forcing:
            doc["replacedBecause"] = self.forcing
        if self.unsure:
            doc["replacementKnown"] = False
        if self.aliased_from:
            doc["aliasedFrom"] = self.aliased_from
        return doc


@dataclass
class Diff:
    old: str
    new: str
    changes: list[Change]

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def protected_at_risk(self) -> list[Change]:
        return [c for c in self.changes if c.protected and c.kind in ("removed", "replaced")]


# --- the two sides ---------------------------------------------------------------------------------------


def load_side(spec: str, project_dir: Path) -> Side:
    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        return Side(spec, _read_plan(path))
    if ":" in spec:
        ref, stack = spec.rsplit(":", 1)
        return Side(spec, render_at_commit(project_dir, ref, stack))
    return Side(spec, render_here(project_dir, spec))


def _read_plan(path: Path) -> dict[str, Any]:
    try:
        plan = json.loads(path.read_text())
    except OSError as e:
        raise DiffError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise DiffError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("resources"), list):
        raise DiffError(f"{path}: not a plan (write one with `fleet plan --format json --out FILE`)")
    return plan


def render_here(project_dir: Path, stack: str) -> dict[str, Any]:
    """The plan document of a stack of this tree (the policy is not run: a diff does not need it)."""
    from fleet.harness import render
    from fleet.report import PolicyResult, plan_document
    from fleet.stackfile import load_stack

    return json.loads(json.dumps(plan_document(render(load_stack(project_dir, stack)), PolicyResult())))


def render_at_commit(project_dir: Path, ref: str, stack: str) -> dict[str, Any]:
    """Render `stack` with the program as it is at commit `ref`: its tree from `git archive`, run in a
    process of its own (its own `components`, `fleet` and agent on the path; this environment's packages)."""
    prefix = _git(project_dir, "rev-parse", "--show-prefix").strip()
    archive = subprocess.run(
        ["git", "-C", str(project_dir), "archive", "--format=tar", f"{ref}:{prefix}" if prefix else ref],
        capture_output=True,
    )
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip().splitlines()
        why = reason[-1] if reason else "git archive failed"
        raise DiffError(f"{ref}:{stack}: no commit {ref!r} here ({why})")
    with tempfile.TemporaryDirectory(prefix="fleet-diff-") as tmp:
        tree = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tree, filter="data")
        out = tree / "plan.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "node_image" / "agent")])}
        code = "import sys; from fleet.cli import main; sys.exit(main(sys.argv[1:]))"
        args = ["plan", "--stack", stack, "--format", "json", "--out", str(out), "-C", str(tree)]
        result = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True
        )
        # 1 is a policy violation: the plan is written all the same.
        if result.returncode not in (0, 1) or not out.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise DiffError(f"{ref}:{stack}: the render at {ref} failed (exit {result.returncode}): {last}")
        return json.loads(out.read_text())


def _git(directory: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise DiffError(f"{directory}: not a git checkout ({result.stderr.strip()})")
    return result.stdout


# --- comparing --------------------------------------------------------------------------------------------


def _key(urn: str) -> str:
    """A URN without its stack and project: `<type chain>::<name>`, the same in two stacks."""
    return "::".join(urn.split("::")[2:])


def _type_chain(urn: str | None) -> str:
    return _key(urn).rsplit("::", 1)[0] if urn and "::pulumi:pulumi:Stack::" not in urn else ""


def _alias_keys(resource: Mapping[str, Any]) -> Iterator[str]:
    """The keys a resource was known by before, from its aliases (a URN, or a spec of what changed)."""
    for alias in resource.get("options", {}).get("aliases", []):
        if isinstance(alias, str):
            yield _key(alias)
            continue
        spec = alias.get("spec", alias) if isinstance(alias, dict) else {}
        if "urn" in spec:
            yield _key(spec["urn"])
            continue
        parent = _type_chain(spec["parentUrn"] if "parentUrn" in spec else resource.get("parent"))
        kind = spec.get("type", resource["type"])
        yield f"{f'{parent}${kind}' if parent else kind}::{spec.get('name', resource['name'])}"


def compare(old: Side, new: Side) -> Diff:
    before = {_key(r["urn"]): r for r in old.plan["resources"] if r["type"] != "pulumi:pulumi:Stack"}
    after = {_key(r["urn"]): r for r in new.plan["resources"] if r["type"] != "pulumi:pulumi:Stack"}
    matched: dict[str, str] = {key: key for key in after if key in before}
    for key, resource in after.items():
        if key in matched:
            continue
        aliased = next((k for k in _alias_keys(resource) if k in before and k not in matched.values()), None)
        if aliased is not None:
            matched[key] = aliased
    changes: list[Change] = []
    for key, resource in after.items():
        if key not in matched:
            changes.append(Change("added", resource["type"], resource["name"], _protected(resource)))
            continue
        change = _changed(before[matched[key]], resource, old.plan, new.plan)
        if change is not None:
            change.aliased_from = matched[key] if matched[key] != key else None
            changes.append(change)
    gone = set(before) - set(matched.values())
    changes += [
        Change("removed", r["type"], r["name"], _protected(r)) for k, r in before.items() if k in gone
    ]
    return Diff(old.label, new.label, changes)


def _protected(resource: Mapping[str, Any]) -> bool:
    return bool(resource.get("options", {}).get("protect"))


def _changed(
    old: Mapping[str, Any], new: Mapping[str, Any], old_plan: Mapping[str, Any], new_plan: Mapping[str, Any]
) -> Change | None:
    paths = dict(_differences(old.get("inputs", {}), new.get("inputs", {}), ""))
    forcing = [p for p in paths if forces_replacement(new["type"], _without_indexes(p))]
    replace_on = new.get("options", {}).get("replaceOnChanges", [])
    forcing += [p for p in paths if p not in forcing and any(_within(p, r) for r in replace_on)]
    if old.get("provider") and new.get("provider") and _key(old["provider"]) != _key(new["provider"]):
        forcing.append(f"provider {_name(old['provider'])} -> {_name(new['provider'])}")
    protected = _protected(old) or _protected(new)
    if not paths and not forcing:
        return None
    kind = "replaced" if forcing else "updated"
    unsure = kind == "updated" and not known(new["type"]) and new.get("provider") is not None
    return Change(kind, new["type"], new["name"], protected, paths, forcing, unsure)


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _within(path: str, prefix: str) -> bool:
    path = _without_indexes(path)
    return path == prefix or path.startswith(f"{prefix}.") or prefix == "*"


def _without_indexes(path: str) -> str:
    out, depth = [], 0
    for c in path:
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif depth == 0:
            out.append(c)
    return "".join(out)


def _differences(old: Any, new: Any, at: str) -> Iterator[tuple[str, tuple[Any, Any]]]:
    """(path, (old, new)) for every leaf that differs; a secret on both sides cannot be told apart."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{at}.{key}" if at else str(key)
            if key not in old:
                yield sub, (None, new[key])
            elif key not in new:
                yield sub, (old[key], None)
            else:
                yield from _differences(old[key], new[key], sub)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _differences(a, b, f"{at}[{i}]")
    elif old != new:
        yield at, (old, new)


# --- reports ----------------------------------------------------------------------------------------------

_SIGNS = {"added": "+", "removed": "-", "updated": "~", "replaced": "+-"}
_TITLES = {
    "replaced": "Replaced (the old one is deleted)",
    "removed": "Removed",
    "added": "Added",
    "updated": "Updated in place",
}
MAX_PATHS_SHOWN = 8


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "(unset)"
    return text if len(text) <= 60 else f"{text[:57]}..."


def summary(diff: Diff) -> str:
    counts = ", ".join(f"{len(diff.of(k))} {k}" for k in ("added", "removed", "updated", "replaced"))
    at_risk = len(diff.protected_at_risk)
    return counts + (f"; {at_risk} protected resource(s) would be deleted" if at_risk else "")


def _lines(change: Change) -> Iterator[str]:
    head = f"{_SIGNS[change.kind]} {change.type} {change.name}"
    if change.protected and change.kind in ("removed", "replaced"):
        head += "  [PROTECTED: pulumi up refuses to delete it; unprotect it first if that is meant]"
    elif change.protected:
        head += "  [protected]"
    if change.aliased_from:
        head += f"  (was {change.aliased_from}, kept by an alias)"
    if change.unsure:
        head += "  (replacement not known offline for this type)"
    yield head
    shown = list(change.paths.items())[:MAX_PATHS_SHOWN]
    for path, (old, new) in shown:
        mark = "  forces replacement" if path in change.forcing else ""
        yield f"    {path}: {_shown(old)} -> {_shown(new)}{mark}"
    if len(change.paths) > MAX_PATHS_SHOWN:
        yield f"    ... and {len(change.paths) - MAX_PATHS_SHOWN} more"
    for reason in change.forcing:
        if reason not in change.paths:
            yield f"    {reason}: forces replacement"


def diff_text(diff: Diff) -> str:
    lines = [f"fleet diff {diff.old} -> {diff.new}: {summary(diff)}"]
    for kind in ("replaced", "removed", "added", "updated"):
        found = diff.of(kind)
        if found:
            lines += ["", f"{_TITLES[kind]} ({len(found)})"]
            for change in found:
                lines += [f"  {line}" for line in _lines(change)]
    return "\n".join(lines) + "\n"


def diff_markdown(diff: Diff) -> str:
    lines = [f"### `fleet diff` {diff.old} → {diff.new}", "", summary(diff)]
    if diff.protected_at_risk:
        lines += [
            "",
            "> [!WARNING]",
            "> Protected resources would be deleted (`pulumi up` refuses until they are unprotected):",
        ]
        lines += [f"> - `{c.type}` `{c.name}` ({c.kind})" for c in diff.protected_at_risk]
    for kind in ("replaced", "removed", "added", "updated"):
        found = diff.of(kind)
        if found:
            lines += [
                "",
                f"<details{' open' if kind in ('replaced', 'removed') else ''}>"
                f"<summary>{_TITLES[kind]} ({len(found)})</summary>",
                "",
                "```diff",
            ]
            for change in found:
                lines += list(_lines(change))
            lines += ["```", "</details>"]
    return "\n".join(lines) + "\n"


def diff_json(diff: Diff) -> str:
    doc = {
        "old": diff.old,
        "new": diff.new,
        **{
            kind: [c.as_dict() for c in diff.of(kind)] for kind in ("added", "removed", "updated", "replaced")
        },
        "protectedAtRisk": [c.as_dict() for c in diff.protected_at_risk],
    }
    return json.dumps(doc, indent=2) + "\n"
