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

# --- Cloud Run jobs (Cloud Run docs: "Set maximum retries for jobs", "Set task timeout for jobs") --------

# Retries per task: 0-10.
CLOUD_RUN_MAX_RETRIES = 10
# A task attempt's timeout: up to 168 hours; with a GPU, up to 1 hour (GA; 12 hours is a preview).
CLOUD_RUN_MAX_TASK_TIMEOUT_SECONDS = 168 * 3600
CLOUD_RUN_GPU_MAX_TASK_TIMEOUT_SECONDS = 3600
# Running job executions per project and region (Cloud Run "Quotas and limits").
CLOUD_RUN_MAX_RUNNING_EXECUTIONS = 1000

# --- Cloud Tasks (google/cloud/tasks/v2 queue.proto, task.proto, cloudtasks.proto) -----------------------

# RateLimits: max_dispatches_per_second at most 500.
CLOUD_TASKS_MAX_DISPATCHES_PER_SECOND = 500
# Task.dispatch_deadline of an HTTP task: 15 s to 30 min (default 10 min).
CLOUD_TASKS_DISPATCH_DEADLINE_SECONDS = (15, 1800)
# CreateTask: schedule_time at most 30 days ahead.
CLOUD_TASKS_MAX_SCHEDULE_SECONDS = 30 * 24 * 3600
# CreateTask: a task is at most 100 KB.
CLOUD_TASKS_MAX_TASK_BYTES = 100 * 1024

# --- Cloud Monitoring ----------------------------------------------------------------------------------

# An alert policy on a log-based metric is refused for a while after the metric is created: "404 Cannot find
# metric(s) that match type = logging.googleapis.com/user/... If a metric was created recently, it could take
# up to 10 minutes to become available" (the API's own message; terraform-provider-google#11102).
LOG_METRIC_READY_SECONDS = 600

# --- labels (Resource Manager "Labels" requirements) ----------------------------------------------------

# Keys 1-63 characters, a lower-case letter first, then lower-case letters, digits, '_' and '-'; values
# 0-63 of the same characters; at most 64 labels on a resource.
GCP_LABEL_MAX_LENGTH = 63
GCP_MAX_LABELS = 64
