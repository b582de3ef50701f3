"""The `batchJobs` section: Cloud Run GPU jobs fed by Cloud Tasks, checked against what the GCP region
offers and what the Cloud Run and Cloud Tasks APIs accept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from components.batch.retry import RetryPolicy
from components.core.catalog.gcp import (
    CLOUD_RUN_GPU_MAX_TASK_TIMEOUT_SECONDS,
    CLOUD_RUN_GPUS,
    CLOUD_RUN_MAX_RETRIES,
    CLOUD_RUN_MAX_RUNNING_EXECUTIONS,
    CLOUD_TASKS_DISPATCH_DEADLINE_SECONDS,
    CLOUD_TASKS_MAX_DISPATCHES_PER_SECOND,
    CLOUD_TASKS_MAX_SCHEDULE_SECONDS,
    GCP_LABEL_MAX_LENGTH,
    GCP_MAX_LABELS,
)
from components.core.config import Problem, Section, StackView, TopKey, one_of, rule, stack_rule
from components.core.fields import DEFAULT_TAG_KEYS, ModelName, Slug
from components.core.node_image import image_engine
from components.model_store import ModelStoreConfig

CloudRunGpuName = Literal["nvidia-l4"]
# Job mode serves the weights mounted from the model's bucket path, which vLLM loads from a directory;
# Ollama loads only from its own model store.
EngineKind = Annotated[
    str, AfterValidator(image_engine(("vllm",), "job mode serves weights from the bucket path: vLLM"))
]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
_MEMBER = re.compile(r"^(user|group|serviceAccount|domain):\S+$")
_LABEL_KEY = re.compile(rf"^[a-z][a-z0-9_-]{{0,{GCP_LABEL_MAX_LENGTH - 1}}}$")
_LABEL_VALUE = re.compile(rf"^[a-z0-9_-]{{0,{GCP_LABEL_MAX_LENGTH}}}$")
# Labels on a batch resource besides the stack's tags: the program's own (job, component) and the
# provider's attribution label (goog-pulumi-provisioned).
_OWN_LABELS = 3


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"got {value!r}; expected an email address")
    return value


def _member(value: str) -> str:
    if not _MEMBER.match(value):
        raise ValueError(
            f"got {value!r}; expected an IAM principal: user:<email>, group:<email>, "
            "serviceAccount:<email> or domain:<domain>"
        )
    return value


Email = Annotated[str, AfterValidator(_email)]
IamMember = Annotated[str, AfterValidator(_member)]


class BatchModelConfig(Section):
    """What the engine serves: the name clients use, and the model in the model store whose weights the
    job mounts read-only (the store's bucket at /models); nothing is downloaded at start."""

    name: ModelName
    source: str = Field(description="the model's name in modelStore.models")


class BatchQueueConfig(Section):
    """The Cloud Tasks queue in front of the job: how fast it dispatches, how it retries a dispatch that
    failed (jobs:run answers at once; a failed execution is the job's own maxRetries), and how long a job
    waits for a free GPU. The queue dispatches one task at a time to the job's admission check, which
    starts an execution only below the job's maxConcurrentExecutions."""

    max_dispatches_per_second: float = Field(default=1.0, gt=0, le=CLOUD_TASKS_MAX_DISPATCHES_PER_SECOND)
    # Bounded: never -1 (unlimited), so a dispatch that keeps failing is given up.
    max_attempts: int = Field(default=5, ge=1, le=100)
    min_backoff_seconds: int = Field(default=1, ge=1)
    max_backoff_seconds: int = Field(default=60, ge=1, le=3600)
    max_doublings: int = Field(default=4, ge=0, le=16)
    # 0: give up after maxAttempts alone.
    max_retry_duration_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    # Each dispatch's deadline (Task.dispatchDeadline, set by the submit client).
    dispatch_deadline_seconds: int = Field(
        default=30, ge=CLOUD_TASKS_DISPATCH_DEADLINE_SECONDS[0], le=CLOUD_TASKS_DISPATCH_DEADLINE_SECONDS[1]
    )
    # A job refused for capacity (the cap, or the project's GPU quota) asks again this much later, as a
    # fresh task: waiting spends none of maxAttempts.
    capacity_wait_seconds: int = Field(default=30, ge=1, le=3600)
    # ... and fails (`no_capacity`) once this long has passed since its submit. A task may be scheduled
    # at most 30 days ahead (CreateTask.schedule_time).
    max_wait_seconds: int = Field(default=24 * 3600, ge=60, le=CLOUD_TASKS_MAX_SCHEDULE_SECONDS)

    replaced_keys: ClassVar[dict[str, str]] = {
        "maxConcurrentDispatches": "it capped jobs:run calls, not GPU executions; bound those with "
        "batchJobs[].maxConcurrentExecutions (the queue now dispatches one task at a time)"
    }

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            min_backoff_s=self.min_backoff_seconds,
            max_backoff_s=self.max_backoff_seconds,
            max_doublings=self.max_doublings,
            max_retry_duration_s=self.max_retry_duration_seconds,
        )

    @property
    def give_up_after_seconds(self) -> float:
        return self.retry.give_up_after_s(self.dispatch_deadline_seconds)


class BatchAlertsConfig(Section):
    """Cloud Monitoring alerts (the seed's four) and where they go."""

    email: Email | None = None
    queue_depth: int = Field(default=100, ge=1)
    failure_rate_percent: float = Field(default=5.0, gt=0, le=100)
    p95_seconds: int = Field(default=120, ge=1)
    # Every attempt starts a GPU instance and its engine cold: page when starts are slow, not when many.
    cold_start_p95_seconds: int = Field(default=300, ge=1)

    replaced_keys: ClassVar[dict[str, str]] = {
        "coldStartsPerHour": "it paged on every completed attempt; set coldStartP95Seconds (the P95 of the "
        "agent's own startup time) instead"
    }


class BatchJobConfig(Section):
    list_key = "name"

    name: Slug
    gpu: CloudRunGpuName = "nvidia-l4"
    cpu: int = Field(default=4, ge=1)
    memory_gib: int = Field(default=16, ge=1)
    engine: EngineKind = "vllm"
    model: BatchModelConfig
    # Concurrent requests the job sends its engine (llama.cpp -np, vLLM's batch fills itself).
    parallel: int = Field(default=4, ge=1, le=256)
    max_retries: int = Field(default=2, ge=0, le=CLOUD_RUN_MAX_RETRIES)
    task_timeout_seconds: int = Field(default=600, ge=1)
    # GPU executions of this job running at once (each holds one GPU). Keep it within the project's
    # "Total Nvidia L4 GPU allocation" quota in the region, less what else uses it there.
    max_concurrent_executions: int = Field(default=2, ge=1, le=CLOUD_RUN_MAX_RUNNING_EXECUTIONS)
    queue: BatchQueueConfig = Field(default_factory=BatchQueueConfig)
    alerts: BatchAlertsConfig = Field(default_factory=BatchAlertsConfig)
    # Who may submit (enqueue, create status documents) and read results.
    submitters: list[IamMember] = Field(default_factory=list)
    results_retention_days: int = Field(default=30, ge=1, le=3650)
    # With versioning (prod), a deleted or overwritten result stays as a noncurrent version this long.
    results_noncurrent_days: int = Field(default=7, ge=1, le=3650)
    # Status documents carry expireAt (submit + this); Firestore's TTL policy deletes them after it.
    status_retention_days: int = Field(default=30, ge=1, le=3650)

    @property
    def worst_case_seconds(self) -> int:
        """Every attempt of one task running to its timeout."""
        return (self.max_retries + 1) * self.task_timeout_seconds


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


@rule(BatchJobConfig)
def _job_limits(job: BatchJobConfig, view: StackView) -> Iterator[Problem]:
    if job.task_timeout_seconds > CLOUD_RUN_GPU_MAX_TASK_TIMEOUT_SECONDS:
        yield (
            "taskTimeoutSeconds",
            f"got {job.task_timeout_seconds}; a Cloud Run task with a GPU runs at most "
            f"{CLOUD_RUN_GPU_MAX_TASK_TIMEOUT_SECONDS} s per attempt",
        )
    queue = job.queue
    if queue.min_backoff_seconds > queue.max_backoff_seconds:
        yield (
            "queue.minBackoffSeconds",
            f"got {queue.min_backoff_seconds}; at most queue.maxBackoffSeconds ({queue.max_backoff_seconds})",
        )
    if view.tier == "prod" and job.alerts.email is None:
        yield "alerts.email", "required in prod: the batch alerts need somewhere to go"


@stack_rule
def _jobs_serve_stored_models(view: StackView) -> Iterator[Problem]:
    stored = view.section(ModelStoreConfig).names
    for path, job in view.all(BatchJobConfig):
        if job.model.source not in stored:
            yield (
                TopKey(f"{path}.model.source"),
                f"got {job.model.source!r}, which modelStore.models does not list; the store holds: "
                f"{one_of(stored) or '(none)'} (add it there, and load it with `fleet models sync`)",
            )


@stack_rule
def _tags_are_gcp_labels(view: StackView) -> Iterator[Problem]:
    """Batch resources carry the stack's tags as GCP labels (the provider's default labels), whose rules
    are stricter than AWS tags'."""
    jobs = view.all(BatchJobConfig)
    if not jobs:
        return
    tags = view.tags
    for key, value in tags.items():
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            yield (
                TopKey(f"tags.{key}"),
                f"got {key!r}: {value!r}; with batchJobs, tags are also GCP labels: keys start with a "
                "lower-case letter, keys and values are at most 63 lower-case letters, digits, '_' or '-'",
            )
    limit = GCP_MAX_LABELS - len(DEFAULT_TAG_KEYS) - _OWN_LABELS
    if len(tags) > limit:
        yield TopKey("tags"), f"got {len(tags)} tags; with batchJobs at most {limit} (GCP's 64 labels)"
