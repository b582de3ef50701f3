"""The clouds, as far as a render needs them: deterministic ids, plausible computed outputs, and the
naming rules the real APIs enforce.

Per resource type, the cloud's module (`aws.py`, `gcp.py`) registers how it is named and answered
(`registry.py`). Auto-names are made as the engine makes them (`<logical name>-<7 random hex>`, from a
seeded generator, so two renders agree) and never shortened: a name the API would refuse is reported,
with the resource, the name and the limit, as a problem of the render.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pulumi

from fleet.mocks import aws, gcp, kubernetes, time
from fleet.mocks.registry import (
    INVOKES,
    PREFIXED_SUFFIX_LENGTH,
    REGISTRY,
    MockContext,
    TypeSpec,
    digest,
    get_path,
    set_path,
)

_CLOUDS: dict[str, Any] = {"aws": aws, "gcp": gcp, "kubernetes": kubernetes, "time": time}


class UnregisteredTypeError(RuntimeError):
    """The program declared a type no cloud module registers: its names would go unchecked."""


@dataclass(frozen=True)
class NameProblem:
    urn_name: str
    resource_type: str
    physical_name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.urn_name} ({self.resource_type}): name {self.physical_name!r} {self.problem}"


@dataclass(frozen=True)
class Declared:
    """What the mocks decided for one registration."""

    physical_name: str | None


class FleetMocks(pulumi.runtime.Mocks):
    """Mocks for every resource type the program declares."""

    def __init__(self, seed: str = "fleet-plan") -> None:
        self._provider_regions: dict[str, str] = {}
        self._seed = seed
        self.name_problems: list[NameProblem] = []
        self.declared: dict[tuple[str, str], Declared] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        key = f"{args.typ}::{args.name}"
        if args.typ.startswith("pulumi:providers:"):
            provider_id = f"{args.name}-{digest(key)[:8]}"
            region = args.inputs.get("region")
            if isinstance(region, str):
                self._provider_regions[provider_id] = region
            return provider_id, dict(args.inputs)

        if not args.custom:
            return f"{args.name}-{digest(key)[:8]}", dict(args.inputs)  # a component: nothing in the cloud
        spec = REGISTRY.get(args.typ)
        if spec is None:
            cloud = args.typ.split(":", 1)[0]
            raise UnregisteredTypeError(
                f"{args.typ} ({args.name}): no mock registers this type; register it, with its name rule, "
                f"in fleet/mocks/{cloud}.py"
            )
        region = self._region_of(args.provider, args.inputs)
        physical = self._physical_name(spec, args)
        self.declared[(args.typ, args.name)] = Declared(physical)
        if physical is not None and spec.rule is not None:
            problem = spec.rule.problem(physical)
            if problem is not None:
                self.name_problems.append(NameProblem(args.name, args.typ, physical, problem))

        shown = physical if physical is not None else f"{args.name}-{digest(key)[:7]}"
        resource_id = shown if spec.id_is_name else f"{spec.id_prefix or args.name + '-'}{digest(key)[:17]}"
        outputs: dict[str, Any] = json_copy(args.inputs)
        if spec.name_input is not None and physical is not None:
            set_path(outputs, spec.name_input, physical)
        if "." not in (spec.name_input or ""):
            outputs.setdefault("name", shown)
        cloud = _CLOUDS.get(args.typ.split(":", 1)[0])
        if cloud is not None:
            for k, v in cloud.common_outputs(args.typ, shown, region).items():
                outputs.setdefault(k, v)
        if spec.outputs is not None:
            outputs.update(spec.outputs(MockContext(args, region, resource_id, shown)))
        return resource_id, outputs

    def _physical_name(self, spec: TypeSpec, args: pulumi.runtime.MockResourceArgs) -> str | None:
        """The name the cloud will know the resource by: given, derived from a prefix, or auto-named."""
        if spec.name_input is None:
            return None
        given = get_path(args.inputs, spec.name_input)
        if isinstance(given, str):
            return given
        rng = random.Random(f"{self._seed}:{args.typ}::{args.name}")
        if spec.prefix_input is not None:
            prefix = args.inputs.get(spec.prefix_input)
            if isinstance(prefix, str):
                return prefix + "".join(rng.choices("0123456789abcdef", k=PREFIXED_SUFFIX_LENGTH))
        if not spec.autonamed:
            return None
        base = args.name.lower() if spec.lowercase else args.name
        return f"{base}-{''.join(rng.choices(spec.autoname_alphabet, k=spec.autoname_length))}"

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        answer = INVOKES.get(args.token)
        if answer is None:
            raise NotImplementedError(
                f"fleet mocks: no answer for function {args.token}; add one in fleet/mocks/"
                f"{args.token.split(':', 1)[0]}.py"
            )
        return answer(args.args, self._region_of(args.provider, args.args))

    def _region_of(self, provider_ref: str | None, inputs: dict[str, Any]) -> str:
        explicit = inputs.get("region") or inputs.get("location")
        if isinstance(explicit, str):
            return explicit
        if provider_ref:
            return self._provider_regions.get(provider_ref.rsplit("::", 1)[-1], "")
        return ""


def json_copy(values: dict[str, Any]) -> dict[str, Any]:
    """The inputs as outputs: nested mappings copied, so an output set on them leaves the inputs alone."""
    return {k: json_copy(v) if isinstance(v, dict) else v for k, v in values.items()}
