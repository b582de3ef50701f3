"""Cost: GPUs from an allowlist and under the stack's cap, spend attributable by tags, regions approved."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components.core.catalog.aws import AWS_REGIONS, GPU_INSTANCE_TYPES, TIER_MAX_GPUS
from components.core.catalog.gcp import GCP_REGIONS
from components.core.catalog.resource_types import (
    AUTOSCALING_GROUP,
    AWS_PROVIDER,
    CLOUD_RUN_JOB,
    CLOUD_RUN_SERVICE,
    CLOUD_TASKS_QUEUE,
    EC2_INSTANCE,
    GCP_PROVIDER,
    LAUNCH_TEMPLATE,
)
from policies.linking import of_types, referenced
from policies.reliability import pool_instance_types
from policies.support import (
    TIER_KEY,
    as_number,
    effective_tags,
    items,
    known,
    label,
    mapping,
    provider_defaults,
    setting,
    truthy,
)
from policies.validity import is_gpu_instance_type, job_gpus

# Inference-class families are allowed by default; training-class ones (p4d, p5, p5e: 8 GPUs, tens of
# dollars an hour) only when the pack's config lists them.
DEFAULT_GPU_FAMILIES = ("g5", "g6", "g6e")

_ALLOWLIST_SCHEMA = PolicyConfigSchema(
    properties={
        "allowedInstanceTypes": {
            "type": "array",
            "items": {"type": "string"},
            "default": [t for t in GPU_INSTANCE_TYPES if t.split(".")[0] in DEFAULT_GPU_FAMILIES],
            "description": "GPU instance types the fleet may launch (default: the g5, g6 and g6e sizes).",
        }
    }
)


def _instance_types(args: ResourceValidationArgs) -> Iterator[tuple[str, str]]:
    """(where, instance type) for every instance type a resource may launch."""
    if args.resource_type in (LAUNCH_TEMPLATE, EC2_INSTANCE):
        instance_type = known(args.props, "instanceType")
        if isinstance(instance_type, str):
            yield "instanceType", instance_type
    elif args.resource_type == AUTOSCALING_GROUP:
        for i, instance_type in enumerate(pool_instance_types(args.props)):
            yield f"mixedInstancesPolicy.launchTemplate.overrides[{i}]", instance_type


def _allowlist(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = set(setting(args, _ALLOWLIST_SCHEMA, "allowedInstanceTypes"))
    for where, instance_type in _instance_types(args):
        if is_gpu_instance_type(instance_type) and instance_type not in allowed:
            report(
                f"{label(args)} {where} is {instance_type}, which is not on the GPU allowlist "
                f"(config allowedInstanceTypes): {', '.join(sorted(allowed))}.",
                None,
            )


gpu_instance_type_allowlist = ResourceValidationPolicy(
    name="gpu-instance-type-allowlist",
    description=(
        "GPU instance types come from the allowlist (config allowedInstanceTypes): one mistyped size is "
        "a p5.48xlarge at tens of dollars an hour per node."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_ALLOWLIST_SCHEMA,
    validate=_allowlist,
)

_CAP_SCHEMA = PolicyConfigSchema(
    properties={
        "maxGpus": {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
            "default": {**TIER_MAX_GPUS, "default": TIER_MAX_GPUS["dev"]},
            "description": (
                "Most GPUs a stack may run at full scale, by its tier tag; 'default' for any other tier."
            ),
        }
    }
)


def _gpus_of_type(instance_type: str) -> int:
    known_type = GPU_INSTANCE_TYPES.get(instance_type)
    if known_type is not None:
        return known_type.gpus
    return 8 if is_gpu_instance_type(instance_type) else 0  # unknown accelerated type: assume the largest


def _pool_gpus(pool: PolicyResource, templates: list[PolicyResource]) -> int:
    """GPUs a pool runs at its max size: the largest GPU count among the types it may launch."""
    types = pool_instance_types(pool.props)
    if not types:
        spec = mapping(known(pool.props, "launchTemplate"))
        for template in referenced(pool, "launchTemplate", templates, spec.get("id") or spec.get("name")):
            instance_type = known(template.props, "instanceType")
            if isinstance(instance_type, str):
                types.append(instance_type)
    per_node = max((_gpus_of_type(t) for t in types), default=0)
    return per_node * int(as_number(known(pool.props, "maxSize")) or 0)


def _stack_tier(resources: list[PolicyResource]) -> str:
    tiers = Counter(
        tier
        for r in resources
        if r.provider is not None and (tier := provider_defaults(r.provider).get(TIER_KEY))
    )
    return tiers.most_common(1)[0][0] if tiers else "default"


def _gpu_cap(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = args.resources
    templates = of_types(resources, [LAUNCH_TEMPLATE])
    contributions: list[tuple[PolicyResource, int]] = []
    for pool in of_types(resources, [AUTOSCALING_GROUP]):
        contributions.append((pool, _pool_gpus(pool, templates)))
    for instance in of_types(resources, [EC2_INSTANCE]):
        contributions.append((instance, _gpus_of_type(str(known(instance.props, "instanceType", "")))))
    for job in of_types(resources, [CLOUD_RUN_JOB]):
        gpus, _ = job_gpus(job.props)
        template = mapping(known(job.props, "template"))
        concurrent = as_number(template.get("parallelism")) or as_number(template.get("taskCount")) or 1
        contributions.append((job, gpus * int(concurrent)))
    contributions = [(r, n) for r, n in contributions if n > 0]
    total = sum(n for _, n in contributions)
    tier = _stack_tier(resources)
    caps = setting(args, _CAP_SCHEMA, "maxGpus")
    cap = int(caps.get(tier, caps.get("default", 0)))
    if total > cap:
        parts = ", ".join(f"{r.name}: {n}" for r, n in sorted(contributions, key=lambda c: -c[1]))
        report(
            f"At full scale this stack runs {total} GPUs, over the {tier} cap of {cap} (config maxGpus): "
            f"{parts}. Lower a pool's maxSize or a job's parallelism, or raise the cap deliberately.",
            None,
        )


gpu_count_cap = StackValidationPolicy(
    name="gpu-count-cap",
    description=(
        "The GPUs a stack can run at full scale (pools at maxSize, jobs at full parallelism) stay under "
        "its tier's cap (config maxGpus)."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_CAP_SCHEMA,
    validate=_gpu_cap,
)

_TAGS_SCHEMA = PolicyConfigSchema(
    properties={
        "requiredTags": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["owner", "cost-center"],
            "description": "Tag (AWS) or label (GCP) keys every taggable resource carries.",
        }
    }
)

_SDK_MODULES = {"aws": "pulumi_aws", "gcp": "pulumi_gcp"}


@cache
def tag_property(resource_type: str) -> str | None:
    """`tags` or `labels` where the SDK says the resource type takes them, else None.

    Read from the SDK's own Args class (`aws:ec2/vpc:Vpc` -> `pulumi_aws.ec2.VpcArgs`), so the answer
    follows the provider version the program uses.
    """
    package, _, rest = resource_type.partition(":")
    sdk = _SDK_MODULES.get(package)
    if sdk is None or rest.count(":") != 1:
        return None
    module_path, class_name = rest.split(":")
    module_name = module_path.split("/")[0]
    module_name = {"lambda": "lambda_", "index": ""}.get(module_name, module_name)
    try:
        module = importlib.import_module(f"{sdk}.{module_name}" if module_name else sdk)
    except ImportError:
        return None
    args_class = getattr(module, f"{class_name}Args", None)
    wanted = "labels" if package == "gcp" else "tags"
    return wanted if args_class is not None and hasattr(args_class, wanted) else None


def _required_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    key = tag_property(args.resource_type)
    if key is None:
        return
    required = list(setting(args, _TAGS_SCHEMA, "requiredTags"))
    if args.resource_type == AUTOSCALING_GROUP:
        # Provider default tags do not reach Auto Scaling groups or the instances they launch: the group
        # carries the tags itself and propagates them at launch.
        blocks = {
            str(t.get("key")): truthy(t.get("propagateAtLaunch"))
            for t in map(mapping, items(known(args.props, "tags")))
        }
        missing = [t for t in required if not blocks.get(t)]
        if missing:
            report(
                f"{label(args)} lacks {', '.join(missing)} as tags propagated at launch: provider default "
                "tags do not reach Auto Scaling groups, so its GPU nodes would be untagged spend.",
                None,
            )
        return
    present_tags = effective_tags(args)
    missing = [t for t in required if not present_tags.get(t)]
    if missing:
        where = (
            "own labels or the provider's defaultLabels"
            if key == "labels"
            else ("own tags or the provider's defaultTags")
        )
        report(f"{label(args)} lacks the {key} {', '.join(missing)} ({where}).", None)


required_tags = ResourceValidationPolicy(
    name="required-tags",
    description=(
        "Every taggable resource carries the required tags or labels (config requiredTags), counting the "
        "provider's default tags, so its spend is attributable."
    ),
    enforcement_level=EnforcementLevel.ADVISORY,
    config_schema=_TAGS_SCHEMA,
    validate=_required_tags,
)

_REGIONS_SCHEMA = PolicyConfigSchema(
    properties={
        "allowedAwsRegions": {
            "type": "array",
            "items": {"type": "string"},
            "default": sorted(AWS_REGIONS),
            "description": "AWS regions the fleet may run in.",
        },
        "allowedGcpRegions": {
            "type": "array",
            "items": {"type": "string"},
            "default": sorted(GCP_REGIONS),
            "description": "GCP regions the batch side may run in.",
        },
    }
)

# Where a GCP resource names its region (GCS bucket locations are data locations such as "US": not here).
_GCP_REGIONAL = (CLOUD_RUN_JOB, CLOUD_RUN_SERVICE, CLOUD_TASKS_QUEUE)


def _regions(args: ResourceValidationArgs) -> Iterator[tuple[str, str, Any]]:
    """(cloud, property, region) for each region the resource states."""
    props: Mapping[str, Any] = args.props
    if args.resource_type == AWS_PROVIDER or args.resource_type.startswith("aws:"):
        region = known(props, "region")
        if isinstance(region, str):
            yield "aws", "region", region
    elif args.resource_type == GCP_PROVIDER:
        region = known(props, "region")
        if isinstance(region, str):
            yield "gcp", "region", region
    elif args.resource_type in _GCP_REGIONAL:
        location = known(props, "location")
        if isinstance(location, str):
            yield "gcp", "location", location


def _allowed_regions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = {
        "aws": set(setting(args, _REGIONS_SCHEMA, "allowedAwsRegions")),
        "gcp": set(setting(args, _REGIONS_SCHEMA, "allowedGcpRegions")),
    }
    for cloud, prop, region in _regions(args):
        if region not in allowed[cloud]:
            key = "allowedAwsRegions" if cloud == "aws" else "allowedGcpRegions"
            report(
                f"{label(args)} {prop} {region!r} is not an approved region (config {key}): "
                f"{', '.join(sorted(allowed[cloud]))}.",
                None,
            )


allowed_regions = ResourceValidationPolicy(
    name="allowed-regions",
    description=(
        "Providers and resources run only in approved regions (config allowedAwsRegions, "
        "allowedGcpRegions): where GPU capacity, quotas and data residency have been agreed."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=_REGIONS_SCHEMA,
    validate=_allowed_regions,
)

POLICIES = [gpu_instance_type_allowlist, gpu_count_cap, required_tags, allowed_regions]
