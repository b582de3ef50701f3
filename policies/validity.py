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
from components.core.catalog.resource_types import CLOUD_RUN_JOB, ROUTE53_HEALTH_CHECK
from policies.support import (
    as_number,
    cpu_count,
    items,
    known,
    label,
    mapping,
    memory_gib,
    path,
    pod_containers,
    pod_spec,
    present,
)

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
    if args.resource_type != ROUTE53_HEALTH_CHECK:
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

# --- Kubernetes GPU workloads -------------------------------------------------------------------------

# Node labels that select GPU nodes: NVIDIA's GPU feature discovery, GKE, EKS and Karpenter.
GPU_NODE_LABELS = frozenset(
    {
        "nvidia.com/gpu.present", "nvidia.com/gpu.product", "nvidia.com/gpu.count", "nvidia.com/gpu.family",
        "nvidia.com/gpu.memory", "cloud.google.com/gke-accelerator", "k8s.amazonaws.com/accelerator",
        "karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-name",
        "karpenter.k8s.aws/instance-gpu-manufacturer",
    }
)  # fmt: skip


def _gpu_node_keys(spec: Mapping[str, Any]) -> list[str]:
    """The GPU-node labels a pod spec selects on, by node selector or required node affinity."""
    keys = [str(k) for k in mapping(known(spec, "nodeSelector"))]
    terms = path(spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
    for term in items(mapping(terms).get("nodeSelectorTerms")):
        keys += [str(mapping(e).get("key")) for e in items(mapping(term).get("matchExpressions"))]
    return [k for k in keys if k in GPU_NODE_LABELS]


def _gpus(container: Mapping[str, Any], kind: str) -> float | None:
    return as_number(mapping(path(container, "resources", kind)).get(GPU_LIMIT))


def _gpu_workload_problems(spec: Mapping[str, Any]) -> Iterator[str]:
    containers = pod_containers(spec)
    why = [f"selects {key}" for key in _gpu_node_keys(spec)]
    why += [
        "tolerates the nvidia.com/gpu taint"
        for t in items(spec.get("tolerations"))
        if mapping(t).get("key") == GPU_LIMIT
    ]
    why += [
        f"container {c.get('name')!r} asks for nvidia.com/gpu"
        for c in containers
        if _gpus(c, "requests") is not None or _gpus(c, "limits") is not None
    ]
    if not why:
        return  # not a GPU workload
    if not any((_gpus(c, "limits") or 0) >= 1 for c in containers):
        reasons = "; ".join(dict.fromkeys(why))
        yield (
            f"runs on GPU nodes ({reasons}) without resources.limits['nvidia.com/gpu'] on any container: the "
            "scheduler would not reserve a GPU for it, and the node's GPUs would be shared with pods that did"
        )
    for c in containers:
        requests, limits = _gpus(c, "requests"), _gpus(c, "limits")
        if requests is not None and requests != limits:
            yield (
                f"container {c.get('name')!r} requests {requests:g} nvidia.com/gpu with a limit of "
                f"{'none' if limits is None else f'{limits:g}'}: Kubernetes takes an extended resource only "
                "with its request equal to its limit"
            )


def _gpu_workload_limits(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args)
    if spec is None:
        return
    for problem in _gpu_workload_problems(spec):
        report(f"{label(args)} {problem}.", None)


gpu_workload_limits = ResourceValidationPolicy(
    name="gpu-workload-limits",
    description=(
        "Kubernetes workloads that run on GPU nodes (a GPU node selector or affinity, the nvidia.com/gpu "
        "toleration, or a GPU request) set resources.limits['nvidia.com/gpu'], with any request equal to it."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_gpu_workload_limits,
)

POLICIES = [cloud_run_gpu_job_shape, route53_health_check_interval, gpu_workload_limits]
