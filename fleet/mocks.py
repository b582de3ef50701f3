"""The cloud, as far as a render needs it: deterministic ids and plausible computed outputs.

Ids look like the cloud's own (vpc-…, subnet-…), ARNs carry the resource's region and a fixed account,
and the few functions the program calls (zones, caller identity) answer from the catalog, so the
program's stack outputs render as they would after `pulumi up`. A function the mocks do not know is an
error naming its token, never a silent empty answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pulumi

from components.catalog import AWS_REGIONS

ACCOUNT_ID = "123456789012"

_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/flowLog:FlowLog": "fl-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
}

# Computed outputs beyond id/arn/name that components read, by resource type.
ExtraOutputs = Callable[["_Context"], dict[str, Any]]
EXTRA_OUTPUTS: dict[str, ExtraOutputs] = {}


def extra_outputs(resource_type: str) -> Callable[[ExtraOutputs], ExtraOutputs]:
    def register(fn: ExtraOutputs) -> ExtraOutputs:
        EXTRA_OUTPUTS[resource_type] = fn
        return fn

    return register


class _Context:
    def __init__(self, args: pulumi.runtime.MockResourceArgs, region: str, resource_id: str, physical: str):
        self.args = args
        self.inputs: dict[str, Any] = args.inputs
        self.region = region
        self.id = resource_id
        self.physical_name = physical


@extra_outputs("aws:ec2/eip:Eip")
def _eip(ctx: _Context) -> dict[str, Any]:
    octet = int(_digest(ctx.args.name)[:2], 16)
    return {"publicIp": f"203.0.113.{octet}", "allocationId": ctx.id}


@extra_outputs("aws:ec2/vpc:Vpc")
def _vpc(ctx: _Context) -> dict[str, Any]:
    return {
        "defaultRouteTableId": f"rtb-{_digest(ctx.id)[:17]}",
        "mainRouteTableId": f"rtb-{_digest(ctx.id)[:17]}",
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _service_and_kind(resource_type: str) -> tuple[str, str]:
    """`aws:ec2/natGateway:NatGateway` -> ("ec2", "nat-gateway")."""
    module = resource_type.split(":")[1]
    service, _, kind = module.partition("/")
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in kind)
    return service, kebab


class FleetMocks(pulumi.runtime.Mocks):
    """Mocks for every resource type the program declares."""

    def __init__(self) -> None:
        self._provider_regions: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        digest = _digest(f"{args.typ}::{args.name}")
        if args.typ.startswith("pulumi:providers:"):
            provider_id = f"{args.name}-{digest[:8]}"
            region = args.inputs.get("region")
            if isinstance(region, str):
                self._provider_regions[provider_id] = region
            return provider_id, dict(args.inputs)

        resource_id = f"{_ID_PREFIX.get(args.typ, args.name + '-')}{digest[:17]}"
        region = self._region_of(args.provider, args.inputs)
        physical = args.inputs.get("name") or f"{args.name}-{digest[:7]}"
        outputs: dict[str, Any] = {"name": physical, **args.inputs}
        if args.typ.startswith("aws:"):
            service, kind = _service_and_kind(args.typ)
            scope = "" if service == "iam" else region
            outputs.setdefault("arn", f"arn:aws:{service}:{scope}:{ACCOUNT_ID}:{kind}/{physical}")
            outputs.setdefault("region", region)
        extra = EXTRA_OUTPUTS.get(args.typ)
        if extra is not None:
            outputs.update(extra(_Context(args, region, resource_id, physical)))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        region = self._region_of(args.provider, args.args)
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            count = AWS_REGIONS[region].availability_zones
            suffixes = "abcdef"[:count]
            return {
                "names": [f"{region}{s}" for s in suffixes],
                "zoneIds": [
                    f"{region[:3]}{region.split('-')[1][:2]}{region[-1]}-az{i + 1}" for i in range(count)
                ],
                "id": region,
                "region": region,
            }
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/inference-fleet-deployer/pulumi",
                "userId": "AROAEXAMPLEDEPLOYER:pulumi",
                "id": ACCOUNT_ID,
            }
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "id": region, "endpoint": f"ec2.{region}.amazonaws.com"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        raise NotImplementedError(
            f"fleet mocks: no answer for function {args.token}; add one in fleet/mocks.py"
        )

    def _region_of(self, provider_ref: str | None, inputs: dict[str, Any]) -> str:
        explicit = inputs.get("region")
        if isinstance(explicit, str):
            return explicit
        if provider_ref:
            return self._provider_regions.get(provider_ref.rsplit("::", 1)[-1], "")
        return ""
