"""Cloud validity: shapes the clouds accept, caught before `pulumi up` meets the API's refusal."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from components.core.catalog.gcp import CLOUD_RUN_GPUS
from policies.support import as_number, cpu_count, items, known, label, mapping, memory_gib, path, present

CLOUD_RUN_JOB = "gcp:cloudrunv2/job:Job"
GPU_LIMIT = "nvidia.com/gpu"

# EC2 families with GPUs or other accelerators: p3, p4d, p5e, g5, g6e, g5g, gr6, inf2, trn1n, dl1, ...
_ACCELERATED_FAMILY = re.compile(r"^(p|g|gr|inf|trn|dl|vt|f)[0-9]+[a-z-]*\.")


def is_gpu_instance_type(instance_type: str) -> bool:
    return bool(_ACCELERATED_FAMILY.match(instance_type))


def gpu_instance_types(instance_types: Iterable[str]) -> list[str]:
    return [t for t in instance_types if is_gpu_instance_type(t)]


def job_gpus(props: Mapping[str, Any]) -> tuple[int, list[Mapping[str, Any]]]:
    """GPUs one task of a Cloud Run job asks for, and the containers that ask."""
    task = mapping(path(props, "template", "template"))
    asking = []
    total = 0
    for container in map(mapping, items(task.get("containers"))):
        gpus = as_number(mapping(path(container, "resources", "limits")).get(GPU_LIMIT))
        if gpus:
            total += int(gpus)
            asking.append(container)
    return total, asking


def _job_region(args: ResourceValidationArgs) -> str | None:
    location = known(args.props, "location")
    if isinstance(location, str):
        return location
    region = known(args.provider.props, "region") if args.provider else None
    return region if isinstance(region, str) else None


def _gpu_job_problems(args: ResourceValidationArgs) -> Iterator[str]:
    gpus, asking = job_gpus(args.props)
    if not asking:
        return
    task = mapping(path(args.props, "template", "template"))
    if gpus != 1:
        yield f"asks for {gpus} GPUs per task; Cloud Run gives a task exactly one"
    accelerator = path(task, "nodeSelector", "accelerator")
    gpu = CLOUD_RUN_GPUS.get(str(accelerator))
    if accelerator is None:
        yield "sets no template.template.nodeSelector.accelerator (the GPU type)"
    elif gpu is None:
        yield f"asks for accelerator {accelerator!r}; Cloud Run GPUs known here: {', '.join(CLOUD_RUN_GPUS)}"
    else:
        region = _job_region(args)
        if region is not None and region not in gpu.regions:
            offered = ", ".join(sorted(gpu.regions))
            yield f"runs in {region}, where {accelerator} is not offered (offered: {offered})"
    min_cpu = gpu.min_cpu if gpu else 4
    min_memory = gpu.min_memory_gib if gpu else 16
    for container in asking:
        limits = mapping(path(container, "resources", "limits"))
        name = container.get("name") or args.name
        cpu, memory = cpu_count(limits.get("cpu")), memory_gib(limits.get("memory"))
        if cpu is None or cpu < min_cpu:
            yield f"container {name!r} has cpu {limits.get('cpu')!r}; a GPU task needs at least {min_cpu}"
        if memory is None or memory < min_memory:
            given = limits.get("memory")
            yield f"container {name!r} has memory {given!r}; a GPU task needs at least {min_memory}Gi"
    if not present(task, "gpuZonalRedundancyDisabled"):
        yield (
            "does not state template.template.gpuZonalRedundancyDisabled: choose zonal redundancy (needs "
            "its own GPU quota) or not, rather than inherit whatever the API defaults to"
        )


def _gpu_job_shape(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLOUD_RUN_JOB:
        return
    for problem in _gpu_job_problems(args):
        report(f"{label(args)} {problem}.", None)


cloud_run_gpu_job_shape = ResourceValidationPolicy(
    name="cloud-run-gpu-job-shape",
    description=(
        "Cloud Run GPU jobs ask for exactly one GPU with at least 4 CPU and 16 GiB, name an accelerator "
        "offered in the job's region, and state their zonal redundancy."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gpu_job_shape,
)

ROUTE53_INTERVALS = (10, 30)
ROUTE53_FAILURE_THRESHOLD = (1, 10)


def _health_check(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:route53/healthCheck:HealthCheck":
        return
    interval = as_number(known(args.props, "requestInterval"))
    if interval is not None and interval not in ROUTE53_INTERVALS:
        report(
            f"{label(args)} sets requestInterval {interval:g}: Route53 checks every 10 or 30 seconds only.",
            None,
        )
    threshold = as_number(known(args.props, "failureThreshold"))
    low, high = ROUTE53_FAILURE_THRESHOLD
    if threshold is not None and not low <= threshold <= high:
        report(f"{label(args)} sets failureThreshold {threshold:g}: Route53 takes {low}-{high}.", None)


route53_health_check_interval = ResourceValidationPolicy(
    name="route53-health-check-interval",
    description="Route53 health checks use an interval Route53 offers (10 or 30 s) and a threshold of 1-10.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_health_check,
)

POLICIES = [cloud_run_gpu_job_shape, route53_health_check_interval]
