"""Offline policy run: the pack's rules applied to a rendering's recorded resources, as the engine would.

The Pulumi engine runs the pack in three steps, and so does this module:

1. Config. The engine reconciles the pack's config (`ReconcilePolicyPackConfig`): each rule starts from its
   own enforcement level and its schema's defaults, then the `--policy-pack-config` file applies (an
   `"all"` enforcement level first, then per-rule levels and properties), and the result is validated
   against each rule's schema. `load_config_file` and `reconcile` do the same.
2. Resource rules (`Analyze`), once per registered resource, in registration order. A rule receives the
   resource's *inputs* as they travel on the wire, deserialized by the policy SDK's own
   `deserialize_properties` (secrets unwrapped) and wrapped in `unknown_checking_proxy`, so a value known
   only after `pulumi up` raises `UnknownValueError` when read; the engine then reports the rule as unable
   to run during preview (advisory) rather than passing or failing it. The resource's provider comes
   along with the provider's inputs.
3. Stack rules (`AnalyzeStack`), once, over every resource with its *outputs* (the state the mocks
   answered with, plus its id), provider and parent linked to the parent's object, the root stack included.

Tests and `fleet plan` both call `evaluate`: one code path.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from fleet.harness import STACK_TYPE, RecordedResource, Rendering
from fleet.report import PolicyResult, Violation

ALL = "all"  # the config key whose enforcement level applies to every rule


class PolicyConfigError(ValueError):
    """The policy pack config is invalid; one line per problem, naming the rule and the key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class RuleConfig:
    """One rule's settings. In a config file the level may be left out (None): the rule keeps its own."""

    enforcement: EnforcementLevel | None
    properties: dict[str, Any] = field(default_factory=dict)


# --- config -------------------------------------------------------------------------------------------


def load_config_file(path: Path) -> dict[str, RuleConfig | EnforcementLevel]:
    """Read a `--policy-pack-config` file: `{"rule": "advisory"}` or `{"rule": {"enforcementLevel": ..,
    "<property>": ..}}`, with `"all"` setting every rule's level."""
    try:
        text = path.read_text()
    except OSError as e:
        raise PolicyConfigError([f"{path}: cannot read ({e.strerror})"]) from None
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise PolicyConfigError([f"{path}: not valid JSON ({e.msg}, line {e.lineno})"]) from None
    if not isinstance(raw, dict):
        raise PolicyConfigError([f"{path}: expected a JSON object of rule name -> level or settings"])
    return parse_config(raw, source=str(path))


def parse_config(
    raw: Mapping[str, Any], source: str = "policy config"
) -> dict[str, RuleConfig | EnforcementLevel]:
    parsed: dict[str, RuleConfig | EnforcementLevel] = {}
    problems: list[str] = []
    for name, value in raw.items():
        if isinstance(value, str):
            level = _level(value)
            if level is None:
                problems.append(f"{source}: {name}: {value!r} is not an enforcement level; {_LEVELS}")
            else:
                parsed[name] = level
        elif isinstance(value, dict):
            properties = dict(value)
            given = properties.pop("enforcementLevel", None)
            level = _level(given) if given is not None else None
            if given is not None and level is None:
                problems.append(f"{source}: {name}.enforcementLevel: {given!r} is not one; {_LEVELS}")
                continue
            parsed[name] = RuleConfig(level, properties)
        else:
            problems.append(f"{source}: {name}: expected an enforcement level or an object, got {value!r}")
    if problems:
        raise PolicyConfigError(problems)
    return parsed


_LEVELS = "allowed: " + ", ".join(level.value for level in EnforcementLevel)


def _level(value: Any) -> EnforcementLevel | None:
    try:
        return EnforcementLevel(value)
    except ValueError:
        return None


def reconcile(
    policies: Sequence[Policy], given: Mapping[str, RuleConfig | EnforcementLevel] | None = None
) -> dict[str, RuleConfig]:
    """Each rule's enforcement level and properties, as the CLI computes them before configuring the pack."""
    names = {p.name for p in policies}
    result = {
        p.name: RuleConfig(
            p.enforcement_level or EnforcementLevel.ADVISORY,
            {
                key: prop["default"]
                for key, prop in (p.config_schema.properties if p.config_schema else {}).items()
                if "default" in prop
            },
        )
        for p in policies
    }
    given = dict(given or {})
    problems = [
        f"policy config: {name}: no such rule in the pack" for name in given if name not in names | {ALL}
    ]
    everyone = given.pop(ALL, None)
    if everyone is not None:
        level = everyone if isinstance(everyone, EnforcementLevel) else everyone.enforcement
        if level is not None:
            result = {name: RuleConfig(level, config.properties) for name, config in result.items()}
    schemas = {p.name: p.config_schema for p in policies}
    for name, value in given.items():
        if name not in result:
            continue
        if isinstance(value, RuleConfig):
            problems += _unknown_settings(name, value, schemas[name])
        current = result[name]
        if isinstance(value, EnforcementLevel):
            result[name] = RuleConfig(value, current.properties)
        else:
            result[name] = RuleConfig(
                value.enforcement or current.enforcement, {**current.properties, **value.properties}
            )
    for policy in policies:
        schema = policy.config_schema
        if schema is not None:
            problems += [
                f"policy config: {policy.name}: {problem}"
                for problem in validate_schema(
                    {"type": "object", "properties": schema.properties, "required": schema.required or []},
                    result[policy.name].properties,
                )
            ]
    if problems:
        raise PolicyConfigError(problems)
    return result


def _unknown_settings(name: str, given: RuleConfig, schema: PolicyConfigSchema | None) -> list[str]:
    """A setting the rule does not have would be ignored (the engine's schema check allows extra keys):
    refuse it by name, with the nearest setting."""
    allowed = list(schema.properties) if schema is not None else []
    problems = []
    for key in given.properties:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            settings = f"settings: {', '.join(allowed)}" if allowed else "the rule has no settings"
            problems.append(f"policy config: {name}: {key}: no such setting; {hint}{settings}")
    return problems


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "number": (int, float),
    "integer": (int, float),
}
_SUPPORTED = {
    "type", "properties", "required", "items", "additionalProperties", "enum", "minimum", "maximum",
    "minItems", "default", "description",
}  # fmt: skip


def validate_schema(schema: Mapping[str, Any], value: Any, at: str = "") -> list[str]:
    """Check a config value against the JSON Schema keywords the pack's schemas use.

    The engine validates with a full JSON Schema implementation; the pack's schemas keep to this subset,
    and a keyword outside it is refused here, so the two cannot silently disagree.
    """
    unsupported = set(schema) - _SUPPORTED
    if unsupported:
        raise ValueError(
            f"schema keyword(s) {sorted(unsupported)} at {at or '(root)'}: extend validate_schema"
        )
    where = at or "(root)"
    expected = schema.get("type")
    if expected is not None:
        kinds = _JSON_TYPES[expected]
        ok = isinstance(value, kinds) and not (expected in ("number", "integer") and isinstance(value, bool))
        if ok and expected == "integer" and isinstance(value, float):
            ok = value.is_integer()
        if not ok:
            return [f"{where}: expected {expected}, got {json.dumps(value)}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{where}: needs at least {schema['minItems']} item(s)")
        for i, item in enumerate(value):
            problems += validate_schema(schema.get("items", {}), item, f"{at}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: {key} is required")
        for key, item in value.items():
            sub = f"{at}.{key}" if at else key
            if key in properties:
                problems += validate_schema(properties[key], item, sub)
            elif isinstance(schema.get("additionalProperties"), Mapping):
                problems += validate_schema(schema["additionalProperties"], item, sub)
    return problems


# --- properties as the engine sends them -----------------------------------------------------------------


def engine_properties(value: Any, rendering: Rendering) -> dict[str, Any]:
    """Recorded properties as a rule receives them: deserialized by the policy SDK, unknowns checked."""
    return unknown_checking_proxy(deserialize_properties(_wire(value, rendering)))


def _wire(value: Any, rendering: Rendering) -> Any:
    """A recorded value in the form the engine marshals to an analyzer (`MarshalProperties` with
    KeepUnknowns, KeepSecrets): secrets stay in their signature envelope, an unknown becomes the unknown
    sentinel, a resource reference becomes the referenced resource's id (a component's: its URN)."""
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN_STRING_VALUE
    if isinstance(value, pulumi.Resource):
        urn = _sync_await(value.urn.future())
        target = rendering.get(urn) if urn else None
        return (target.id if target and target.custom else urn) or UNKNOWN_STRING_VALUE
    if isinstance(value, Mapping):
        return {k: _wire(v, rendering) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v, rendering) for v in value]
    return value


def _options(resource: RecordedResource) -> PolicyResourceOptions:
    # The options the engine passes an analyzer, as the recording kept them (custom timeouts are not
    # recorded, and no rule here reads them).
    options = resource.options
    return PolicyResourceOptions(
        protect=options.protect,
        ignore_changes=list(options.ignore_changes),
        delete_before_replace=options.delete_before_replace or None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(options.additional_secret_outputs),
        parent=resource.parent,
    )


@dataclass
class _Run:
    rendering: Rendering
    config: dict[str, RuleConfig]
    stack_tags: Mapping[str, str]
    violations: list[Violation] = field(default_factory=list)
    _providers: dict[str, PolicyProviderResource | None] = field(default_factory=dict)

    def provider(self, resource: RecordedResource) -> PolicyProviderResource | None:
        urn = resource.provider
        if urn is None:
            return None
        if urn not in self._providers:
            try:
                recorded = self.rendering.get(urn)
            except KeyError:
                self._providers[urn] = None
            else:
                props = engine_properties(recorded.inputs, self.rendering)
                self._providers[urn] = PolicyProviderResource(
                    recorded.type, props, recorded.urn, recorded.name
                )
        return self._providers[urn]

    def reporter(self, policy: Policy, default_urn: str) -> ReportViolation:
        level = self.enforcement(policy)

        def report_violation(message: str, urn: str | None = None) -> None:
            # As the SDK composes it: the rule's description, then what this resource does wrong.
            text = policy.description + (f"\n{message}" if message else "")
            self.violations.append(Violation(policy.name, urn or default_urn, text, level.value))

        return report_violation

    def enforcement(self, policy: Policy) -> EnforcementLevel:
        level = self.config[policy.name].enforcement or EnforcementLevel.ADVISORY
        # A rule that cannot remediate reports as mandatory at "remediate", as the SDK does.
        return EnforcementLevel.MANDATORY if level == EnforcementLevel.REMEDIATE else level

    def run(self, policy: Policy, args: Any, urn: str) -> None:
        try:
            result = policy.validate(args, self.reporter(policy, urn))  # type: ignore[arg-type]
            if isawaitable(result):
                asyncio.new_event_loop().run_until_complete(result)  # type: ignore[arg-type]
        except UnknownValueError as e:
            self.violations.append(
                Violation(
                    policy.name,
                    urn,
                    f"can't run policy '{policy.name}' during preview: {e.message}",
                    EnforcementLevel.ADVISORY.value,
                )
            )
        except _NotApplicableError:
            pass


def evaluate(
    rendering: Rendering,
    config: Mapping[str, RuleConfig | EnforcementLevel] | None = None,
    policies: Sequence[Policy] | None = None,
) -> PolicyResult:
    """Run the pack's rules over a rendering: resource rules on each resource, then stack rules."""
    if policies is None:
        from policies.pack import POLICIES

        policies = POLICIES
    run = _Run(rendering, reconcile(policies, config), stack_tags={})
    active = [p for p in policies if run.enforcement(p) != EnforcementLevel.DISABLED]

    for resource in rendering.resources:
        resource_policies = [p for p in active if isinstance(p, ResourceValidationPolicy)]
        if not resource_policies:
            break
        props = engine_properties(resource.inputs, rendering)
        provider = run.provider(resource)
        for policy in resource_policies:
            args = ResourceValidationArgs(
                resource.type,
                props,
                resource.urn,
                resource.name,
                _options(resource),
                provider,
                dict(run.config[policy.name].properties),
                run.stack_tags,
            )
            run.run(policy, args, resource.urn)

    stack_policies = [p for p in active if isinstance(p, StackValidationPolicy)]
    if stack_policies:
        resources = _stack_resources(run)
        for policy in stack_policies:
            args = StackValidationArgs(resources, dict(run.config[policy.name].properties), run.stack_tags)
            run.run(policy, args, "")
    return PolicyResult(evaluated=len(active), violations=run.violations)


def _stack_resources(run: _Run) -> list[PolicyResource]:
    rendering = run.rendering
    resources: list[PolicyResource] = []
    stack_urns = {r.parent for r in rendering.resources if r.parent and f"::{STACK_TYPE}::" in r.parent}
    for urn in sorted(stack_urns):
        props = engine_properties(rendering.outputs, rendering)
        resources.append(
            PolicyResource(
                STACK_TYPE, props, urn, urn.rsplit("::", 1)[-1], _stack_options(), None, None, [], {}
            )
        )
    for recorded in rendering.resources:
        state = dict(recorded.outputs)
        if recorded.custom and recorded.id is not None and not recorded.type.startswith("pulumi:providers:"):
            state.setdefault("id", recorded.id)
        props = engine_properties(state, rendering)
        resources.append(
            PolicyResource(
                recorded.type,
                props,
                recorded.urn,
                recorded.name,
                _options(recorded),
                run.provider(recorded),
                None,
                [],
                {},
            )
        )
    by_urn = {r.urn: r for r in resources}
    recorded_by_urn = {r.urn: r for r in rendering.resources}
    for resource in resources:
        parent = resource.opts.parent
        if parent is not None and parent in by_urn:
            resource.parent = by_urn[parent]
        recorded = recorded_by_urn.get(resource.urn)
        if recorded is None:
            continue
        # As the engine's AnalyzeStack sends them: every resource this one waits for (explicit and from
        # its inputs), and per property the resources its value was computed from.
        resource.property_dependencies = {
            key: [by_urn[u] for u in urns if u in by_urn]
            for key, urns in recorded.property_dependencies.items()
        }
        waits = {
            *recorded.options.depends_on,
            *(u for urns in recorded.property_dependencies.values() for u in urns),
        }
        resource.dependencies = [by_urn[u] for u in sorted(waits) if u in by_urn]
    return resources


def _stack_options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
