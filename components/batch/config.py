"""The `batchJobs` section: Cloud Run GPU jobs, checked against what the GCP region offers.

Validated now; the jobs land with the batch capability.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from components.core.catalog.gcp import CLOUD_RUN_GPUS
from components.core.config import Problem, Section, StackView, one_of, rule
from components.core.fields import Slug

CloudRunGpuName = Literal["nvidia-l4"]


class BatchJobConfig(Section):
    list_key = "name"

    name: Slug
    gpu: CloudRunGpuName = "nvidia-l4"
    cpu: int = Field(default=4, ge=1)
    memory_gib: int = Field(default=16, ge=1)


@rule(BatchJobConfig)
def _job_fits(job: BatchJobConfig, view: StackView) -> Iterator[Problem]:
    gpu = CLOUD_RUN_GPUS[job.gpu]
    if view.gcp_region not in gpu.regions:
        yield (
            "gpu",
            f"{job.gpu} is not offered in {view.gcp_region}; offered in: {one_of(sorted(gpu.regions))}",
        )
    if not gpu.min_cpu <= job.cpu <= gpu.max_cpu:
        yield "cpu", f"got {job.cpu}; a Cloud Run job with {job.gpu} takes {gpu.min_cpu}-{gpu.max_cpu} CPU"
    if not gpu.min_memory_gib <= job.memory_gib <= gpu.max_memory_gib:
        yield (
            "memoryGib",
            f"got {job.memory_gib}; a Cloud Run job with {job.gpu} takes "
            f"{gpu.min_memory_gib}-{gpu.max_memory_gib} GiB",
        )
