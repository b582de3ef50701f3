"""What the clouds offer where: the facts the config model checks a stack against.

A curated snapshot (checked 2026-11), kept as data so that a new region or instance type is a one-line
change. Only regions this platform supports are listed: a region missing here is refused at config time
with the list of the ones that are.
"""

from __future__ import annotations

from dataclasses import dataclass

CATALOG_CHECKED = "2026-11"


@dataclass(frozen=True)
class GpuInstanceType:
    """An EC2 GPU instance type: how many GPUs it carries and which."""

    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib: int


def _family(
    prefix: str, gpu_model: str, gpu_memory_gib: int, sizes: dict[str, int]
) -> dict[str, GpuInstanceType]:
    return {
        f"{prefix}.{size}": GpuInstanceType(f"{prefix}.{size}", gpus, gpu_model, gpu_memory_gib)
        for size, gpus in sizes.items()
    }


_SINGLE_TO_EIGHT = {
    "xlarge": 1,
    "2xlarge": 1,
    "4xlarge": 1,
    "8xlarge": 1,
    "16xlarge": 1,
    "12xlarge": 4,
    "24xlarge": 4,
    "48xlarge": 8,
}

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    **_family("g5", "A10G", 24, _SINGLE_TO_EIGHT),
    **_family("g6", "L4", 24, _SINGLE_TO_EIGHT),
    **_family("g6e", "L40S", 48, _SINGLE_TO_EIGHT),
    **_family("p4d", "A100", 40, {"24xlarge": 8}),
    **_family("p4de", "A100", 80, {"24xlarge": 8}),
    **_family("p5", "H100", 80, {"4xlarge": 1, "48xlarge": 8}),
    **_family("p5e", "H200", 141, {"48xlarge": 8}),
}


@dataclass(frozen=True)
class AwsRegion:
    """An AWS region: how many availability zones a new account can use, and its GPU families."""

    name: str
    availability_zones: int
    gpu_families: frozenset[str]

    def offers(self, instance_type: str) -> bool:
        return instance_type.split(".", 1)[0] in self.gpu_families


def _aws(name: str, azs: int, families: str) -> AwsRegion:
    return AwsRegion(name, azs, frozenset(families.split()))


AWS_REGIONS: dict[str, AwsRegion] = {
    r.name: r
    for r in (
        _aws("us-east-1", 6, "g5 g6 g6e p4d p4de p5 p5e"),
        _aws("us-east-2", 3, "g5 g6 g6e p4d p5"),
        _aws("us-west-2", 4, "g5 g6 g6e p4d p4de p5 p5e"),
        # us-west-1 gives new accounts two zones: too few for a three-zone network.
        _aws("us-west-1", 2, "g5"),
        _aws("ca-central-1", 3, "g5 g6"),
        _aws("eu-west-1", 3, "g5 g6 p4d"),
        _aws("eu-west-2", 3, "g5 g6 p5"),
        _aws("eu-central-1", 3, "g5 g6 g6e p4d p5"),
        _aws("eu-north-1", 3, "g5 g6e p5"),
        _aws("ap-northeast-1", 3, "g5 g6 g6e p4d p5"),
        _aws("ap-southeast-1", 3, "g5 g6"),
        _aws("ap-south-1", 3, "g5 g6 p5"),
    )
}

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


@dataclass(frozen=True)
class CloudRunGpu:
    """A GPU that Cloud Run jobs can attach, with the CPU and memory an instance carrying it may have."""

    name: str
    regions: frozenset[str]
    min_cpu: int
    max_cpu: int
    min_memory_gib: int
    max_memory_gib: int


CLOUD_RUN_GPUS: dict[str, CloudRunGpu] = {
    "nvidia-l4": CloudRunGpu(
        "nvidia-l4",
        frozenset(
            {"us-central1", "us-east4", "europe-west1", "europe-west4", "asia-southeast1", "asia-south1"}
        ),
        min_cpu=4,
        max_cpu=8,
        min_memory_gib=16,
        max_memory_gib=32,
    ),
}

GCP_REGIONS: frozenset[str] = frozenset().union(*(g.regions for g in CLOUD_RUN_GPUS.values()))
