"""What the batch capability publishes: per job, its Cloud Run job, queue and bucket, and the figures derived
from its config (a dispatch's worst-case give-up time, a job's worst-case run time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class BatchJobOutputs:
    name: str
    run_job: pulumi.Output[str]
    queue: pulumi.Output[str]
    bucket: pulumi.Output[str]
    dispatcher_email: pulumi.Output[str]
    give_up_after_seconds: float
    worst_case_seconds: int


@dataclass(frozen=True)
class BatchOutputs:
    project: str
    region: str
    database: pulumi.Output[str] | None
    images: dict[str, pulumi.Output[str]]
    jobs: dict[str, BatchJobOutputs]

    def exports(self) -> dict[str, Any]:
        if not self.jobs:
            return {}
        return {
            "batch": {
                "project": self.project,
                "region": self.region,
                "database": self.database,
                "images": self.images,
                "jobs": {
                    name: {"job": j.run_job, "queue": j.queue, "bucket": j.bucket}
                    for name, j in self.jobs.items()
                },
            }
        }

    def budgets(self) -> dict[str, Any]:
        if not self.jobs:
            return {}
        return {
            "batchQueueGiveUpSeconds": {n: j.give_up_after_seconds for n, j in self.jobs.items()},
            "batchJobWorstCaseSeconds": {n: j.worst_case_seconds for n, j in self.jobs.items()},
        }
