"""What the sandbox runs, read from the stack's render (`fleet plan --format json`'s document): per
control-plane region the gateway's LiteLLM config and task settings, the region-health sidecar's
settings, the Redis ACL users, the fleet controller's function environment and the model store's volume;
per GPU pool its Auto Scaling group, termination hook, target group and the agent config of its user data;
the Route53 records and health checks in front; the plan's budgets.

Everything is taken from resources' recorded inputs (the program's contract with the cloud), never from
the components' internals, so a refactor of the program that renders the same resources changes nothing
here. A resource the sandbox needs and cannot find is a `PlanError` naming it."""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

ASG = "aws:autoscaling/group:Group"
LIFECYCLE_HOOK = "aws:autoscaling/lifecycleHook:LifecycleHook"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
BUCKET_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
REDIS_USER = "aws:elasticache/user:User"
FUNCTION = "aws:lambda/function:Function"
INVOCATION = "aws:lambda/invocation:Invocation"
RECORD = "aws:route53/record:Record"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
SSM_DOCUMENT = "aws:ssm/document:Document"


class PlanError(ValueError):
    """The render lacks something the sandbox runs (one line naming it)."""


@dataclass(frozen=True)
class HealthCheckSpec:
    """A target group's health check, as rendered (ELBv2 semantics)."""

    path: str
    interval_s: float
    timeout_s: float
    healthy_threshold: int
    unhealthy_threshold: int
    matcher: str

    def accepts(self, status: int) -> bool:
        for part in self.matcher.split(","):
            low, _, high = part.strip().partition("-")
            if int(low) <= status <= int(high or low):
                return True
        return False


@dataclass(frozen=True)
class TargetGroupSpec:
    name: str
    arn: str
    health: HealthCheckSpec
    algorithm: str
    deregistration_delay_s: float


@dataclass(frozen=True)
class PoolSpec:
    name: str
    region: str
    model: str
    engine: str
    group: str
    min_size: int
    max_size: int
    target_group: TargetGroupSpec
    hook_name: str
    hook_timeout_s: float
    hook_default_result: str
    # The launch hook (in service once the agent completes it), where the render declares one.
    launch_hook_name: str | None
    launch_hook_timeout_s: float
    launch_hook_default_result: str
    agent_config: Mapping[str, Any]  # the agent.toml of the launch template's user data
    instance_types: tuple[str, ...]
    min_healthy_percentage: int
    max_healthy_percentage: int
    instance_warmup_s: float
    tags: Mapping[str, str]  # propagated at launch

    @property
    def model_dir(self) -> str:
        return str(self.agent_config["model_store"]["model_dir"])


@dataclass(frozen=True)
class RegionSpec:
    region: str
    role: str  # "primary", "standby"
    gateway_config: Mapping[str, Any]  # LiteLLM's config.yaml, as rendered
    gateway_env: Mapping[str, str]  # the gateway container's plain environment
    gateway_secret_names: tuple[str, ...]  # what the task injects from Secrets Manager
    gateway_command: tuple[str, ...]
    region_health_env: Mapping[str, str]
    redis_users: Mapping[str, str]  # user name -> access string
    controller_env: Mapping[str, str]
    restart_document: Mapping[str, Any]  # the SSM document's name and content
    volume: Mapping[str, Any]  # the model store's format settings (volume, blockSizeKib, ...)
    pools: tuple[PoolSpec, ...]


@dataclass(frozen=True)
class DnsHealthCheck:
    region: str
    path: str
    interval_s: float
    failure_threshold: int
    checker_regions: tuple[str, ...]


@dataclass(frozen=True)
class DnsSpec:
    name: str
    ttl_s: float
    failover: bool  # a PRIMARY/SECONDARY pair on health checks, or one alias
    regions: tuple[str, ...]  # primary first
    health_checks: Mapping[str, DnsHealthCheck] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxPlan:
    stack: str
    regions: tuple[RegionSpec, ...]
    dns: DnsSpec
    budgets: Mapping[str, Any]
    outputs: Mapping[str, Any]

    @property
    def pools(self) -> tuple[PoolSpec, ...]:
        return tuple(p for r in self.regions for p in r.pools)

    def region(self, name: str) -> RegionSpec:
        return next(r for r in self.regions if r.region == name)


class _Resources:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.resources: list[Mapping[str, Any]] = list(document["resources"])

    def one(self, type_: str, name: str) -> Mapping[str, Any]:
        found = [r for r in self.resources if r["type"] == type_ and r["name"] == name]
        if len(found) != 1:
            raise PlanError(f"the render has {len(found)} {type_} named {name!r}; the sandbox needs one")
        return found[0]

    def maybe(self, type_: str, name: str) -> Mapping[str, Any] | None:
        found = [r for r in self.resources if r["type"] == type_ and r["name"] == name]
        return found[0] if found else None

    def of_type(self, type_: str) -> list[Mapping[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]


def read_plan(document: Mapping[str, Any]) -> SandboxPlan:
    resources = _Resources(document)
    outputs = document["outputs"]
    primary = str(outputs["primaryRegion"])
    gateways = dict(outputs.get("gatewayUrls") or {})
    regions = [primary, *sorted(r for r in gateways if r != primary)]
    pools_by_region: dict[str, list[PoolSpec]] = {r: [] for r in regions}
    for name, published in sorted((outputs.get("gpuPools") or {}).items()):
        region = str(published["region"])
        pools_by_region.setdefault(region, []).append(_pool(resources, name, published))
    specs = tuple(
        _region(resources, region, "primary" if region == primary else "standby", pools_by_region[region])
        for region in regions
    )
    return SandboxPlan(
        stack=str(document["stack"]),
        regions=specs,
        dns=_dns(resources, regions),
        budgets=document.get("budgets") or {},
        outputs=outputs,
    )


def _pool(resources: _Resources, name: str, published: Mapping[str, Any]) -> PoolSpec:
    group = resources.one(ASG, f"pool-{name}-asg")["inputs"]
    target_group = resources.one(TARGET_GROUP, f"pool-{name}-tg")
    hook = resources.one(LIFECYCLE_HOOK, f"pool-{name}-drain")["inputs"]
    launch = (resources.maybe(LIFECYCLE_HOOK, f"pool-{name}-ready") or {}).get("inputs") or {}
    template = resources.one(LAUNCH_TEMPLATE, f"pool-{name}-lt")["inputs"]
    agent = agent_config_of(template["userData"])
    (arn,) = group["targetGroupArns"]
    mixed = group.get("mixedInstancesPolicy") or {}
    overrides = mixed.get("launchTemplate", {}).get("overrides", [])
    maintenance = group.get("instanceMaintenancePolicy") or {}
    return PoolSpec(
        name=name,
        region=str(published["region"]),
        model=str(agent["engine"]["models"][0]),
        engine=str(agent["engine"]["kind"]),
        group=str(group["name"]),
        min_size=int(group["minSize"]),
        max_size=int(group["maxSize"]),
        target_group=_target_group(target_group, arn),
        hook_name=str(hook["name"]),
        hook_timeout_s=float(hook.get("heartbeatTimeout", 3600)),
        hook_default_result=str(hook.get("defaultResult", "ABANDON")),
        launch_hook_name=str(launch["name"]) if launch else None,
        launch_hook_timeout_s=float(launch.get("heartbeatTimeout", 3600)),
        launch_hook_default_result=str(launch.get("defaultResult", "ABANDON")),
        agent_config=agent,
        instance_types=tuple(str(o["instanceType"]) for o in overrides),
        min_healthy_percentage=int(maintenance.get("minHealthyPercentage", 90)),
        max_healthy_percentage=int(maintenance.get("maxHealthyPercentage", 100)),
        instance_warmup_s=float(group.get("defaultInstanceWarmup", 300)),
        tags={t["key"]: t["value"] for t in group.get("tags", []) if t.get("propagateAtLaunch")},
    )


def _target_group(resource: Mapping[str, Any], arn: str) -> TargetGroupSpec:
    inputs = resource["inputs"]
    check = inputs["healthCheck"]
    # ELBv2's defaults where the program leaves a value out (CreateTargetGroup's documented defaults).
    return TargetGroupSpec(
        name=str(resource["physicalName"] or resource["name"]),
        arn=arn,
        health=HealthCheckSpec(
            path=str(check.get("path", "/")),
            interval_s=float(check.get("interval", 30)),
            timeout_s=float(check.get("timeout", 5)),
            healthy_threshold=int(check.get("healthyThreshold", 5)),
            unhealthy_threshold=int(check.get("unhealthyThreshold", 2)),
            matcher=str(check.get("matcher", "200")),
        ),
        algorithm=str(inputs.get("loadBalancingAlgorithmType", "round_robin")),
        deregistration_delay_s=float(inputs.get("deregistrationDelay", 300)),
    )


def agent_config_of(user_data: str) -> dict[str, Any]:
    """The agent's config from a launch template's user data: cloud-config writing agent.toml."""
    cloud_config = yaml.safe_load(base64.b64decode(user_data))
    for entry in cloud_config.get("write_files", []):
        if str(entry.get("path", "")).endswith("agent.toml"):
            return tomllib.loads(entry["content"])
    raise PlanError("the pool's user data writes no agent.toml")


def _container(definitions: list[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for definition in definitions:
        if definition["name"] == name:
            return definition
    raise PlanError(f"the gateway's task definition has no {name!r} container")


def _region(resources: _Resources, region: str, role: str, pools: list[PoolSpec]) -> RegionSpec:
    prefix = f"control-plane-{region}"
    config = yaml.safe_load(resources.one(BUCKET_OBJECT, f"{prefix}-litellm-config")["inputs"]["content"])
    task = resources.one(TASK_DEFINITION, f"{prefix}-gateway")["inputs"]
    definitions = json.loads(task["containerDefinitions"])
    gateway = _container(definitions, "gateway")
    sidecar = _container(definitions, "region-health")
    users = {
        u["inputs"]["userName"]: u["inputs"]["accessString"]
        for u in resources.of_type(REDIS_USER)
        if u["name"].startswith(f"{prefix}-redis-")
    }
    controller = resources.maybe(FUNCTION, f"controller-{region}-function")
    document = resources.maybe(SSM_DOCUMENT, f"controller-{region}-agent-restart")
    volume = resources.maybe(INVOCATION, f"models-{region}-format")
    return RegionSpec(
        region=region,
        role=role,
        gateway_config=config,
        gateway_env={e["name"]: e["value"] for e in gateway.get("environment", [])},
        gateway_secret_names=tuple(s["name"] for s in gateway.get("secrets", [])),
        gateway_command=tuple(gateway.get("command", [])),
        region_health_env={e["name"]: e["value"] for e in sidecar.get("environment", [])},
        redis_users=users,
        controller_env=dict(controller["inputs"]["environment"]["variables"]) if controller else {},
        restart_document=(
            {"name": document["inputs"]["name"], "content": document["inputs"]["content"]} if document else {}
        ),
        volume=json.loads(volume["inputs"]["triggers"]["settings"]) if volume else {},
        pools=tuple(pools),
    )


def _dns(resources: _Resources, regions: list[str]) -> DnsSpec:
    records = [
        r for r in resources.of_type(RECORD) if r["name"].startswith("dns-api") and r["inputs"].get("name")
    ]
    failover = [r for r in records if r["inputs"].get("failoverRoutingPolicies")]
    if not failover:
        (alias,) = records
        # An alias to the load balancer: resolvers hold it for the ALB's own 60 s (README, "dnsTtl").
        return DnsSpec(name=alias["inputs"]["name"], ttl_s=60.0, failover=False, regions=(regions[0],))
    checks: dict[str, DnsHealthCheck] = {}
    for region in regions:
        check = resources.one(HEALTH_CHECK, f"dns-{region}")["inputs"]
        checks[region] = DnsHealthCheck(
            region=region,
            path=str(check["resourcePath"]),
            interval_s=float(check["requestInterval"]),
            failure_threshold=int(check["failureThreshold"]),
            checker_regions=tuple(check.get("regions", ())),
        )
    primary = next(r for r in failover if r["inputs"]["failoverRoutingPolicies"][0]["type"] == "PRIMARY")
    return DnsSpec(
        name=primary["inputs"]["name"],
        ttl_s=float(primary["inputs"]["ttl"]),
        failover=True,
        regions=tuple(regions),
        health_checks=checks,
    )
