"""GCP: where Cloud Run offers GPUs, and what a job carrying one may ask for.

A curated snapshot (checked 2026-11, Cloud Run GPU docs), kept as data: a new region is a one-line change.
"""

from __future__ import annotations

from dataclasses import dataclass


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
