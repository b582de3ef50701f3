"""The batch capability: Cloud Tasks queues dispatching Cloud Run GPU jobs (the node image, agent in job
mode), status in Firestore, results in a bucket, alerts in Cloud Monitoring.

Published: `BatchJobConfig` (and its parts), `BatchOutputs`, `declare`; `names` (how the resources are named,
for the `fleet jobs` client) and `retry` (Cloud Tasks' retry schedule) are plain modules.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.batch.config import BatchAlertsConfig, BatchJobConfig, BatchModelConfig, BatchQueueConfig
from components.batch.outputs import BatchOutputs
from components.core.context import StackContext
from components.model_store import ModelStoreOutputs

__all__ = [
    "BatchAlertsConfig",
    "BatchJobConfig",
    "BatchModelConfig",
    "BatchOutputs",
    "BatchQueueConfig",
    "declare",
]


def declare(
    stack: StackContext,
    *,
    project: str,
    region: str,
    jobs: Sequence[BatchJobConfig],
    store: ModelStoreOutputs,
) -> BatchOutputs:
    """The stack's batch jobs (`batch`), each mounting its model from the model store's bucket; a stack
    without any declares nothing and loads no GCP SDK."""
    # Imported here: pulumi_gcp and pulumi_docker_build load only for stacks that have batch jobs.
    if not jobs:
        return BatchOutputs(project=project, region=region, database=None, images={}, jobs={})
    from components.batch.batch import BatchJobs, BatchJobsArgs

    mounts = {job.name: store.gcs_mount(job.model.source) for job in jobs}
    component = BatchJobs(
        "batch", BatchJobsArgs(stack=stack, gcp=stack.gcp(project, region), jobs=jobs, mounts=mounts)
    )
    return component.outputs
