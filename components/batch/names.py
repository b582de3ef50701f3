"""The names a batch job's GCP resources get, and the REST paths that reach them: one function of (stack,
project, region, job), shared by the component that creates them and the `fleet jobs` client that calls
them, so the two can never disagree.

Plain Python (no SDK): the client computes them from the stack file without rendering the program.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# The prefix of every explicit physical name (components.core.context.NAME_PREFIX; a test holds them equal:
# importing the context would load the cloud SDKs into the client).
NAME_PREFIX = "fleet"

# The status collection every job's documents live in (one document per submitted job, keyed by job id).
STATUS_COLLECTION = "jobs"
# The timestamp field of a status document after which Firestore's TTL policy deletes it.
STATUS_EXPIRY_FIELD = "expireAt"
# The environment variable jobs:run overrides with the submitted job's id.
JOB_ID_ENV = "FLEET_JOB_ID"
# The container's name in the job template (containerOverrides name it).
CONTAINER_NAME = "agent"
# Where the deployed stack says where each job's queue is (one document per job, keyed by job name): the
# queue's name changes whenever the queue is replaced, so no client can compute it.
DIRECTORY_COLLECTION = "batchJobs"
# Cloud Run service names are at most 49 characters (Cloud Run Admin API v2 Service).
SERVICE_NAME_MAX = 49


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:4]


@dataclass(frozen=True)
class BatchNames:
    stack: str
    project: str
    region: str
    job: str

    @property
    def run_job(self) -> str:
        """Cloud Run job id (<= 63: the job name is a 2-32 character slug)."""
        return f"{NAME_PREFIX}-{self.stack}-{self.job}"

    @property
    def admission_service(self) -> str:
        """The job's admission check (a Cloud Run service, <= 49 characters)."""
        name = f"{NAME_PREFIX}-{self.stack}-{self.job}-admit"
        if len(name) <= SERVICE_NAME_MAX:
            return name
        return f"{NAME_PREFIX}-{self.job[:32].rstrip('-')}-{_short_hash(self.stack, self.job)}-admit"

    @property
    def bucket(self) -> str:
        """Results bucket: global names, so the (globally unique) project id leads."""
        return f"{self.project}-{self.stack}-{self.job}"

    def service_account_id(self, role: str) -> str:
        """IAM account ids are 6-30 characters: the job name (cut to 15), the role and a digest of the stack
        and job keep them unique per stack in one project."""
        return f"{self.job[:15].rstrip('-')}-{role}-{_short_hash(self.stack, self.job, role)}"

    @property
    def runner_account_id(self) -> str:
        """The job's own identity (the container's)."""
        return self.service_account_id("run")

    @property
    def dispatcher_account_id(self) -> str:
        """Cloud Tasks' OAuth identity for jobs:run."""
        return self.service_account_id("tasks")

    def service_account_email(self, account_id: str) -> str:
        return f"{account_id}@{self.project}.iam.gserviceaccount.com"

    def metric(self, what: str) -> str:
        return f"{NAME_PREFIX}-{self.stack}-{self.job}-{what}"

    # --- REST paths ---------------------------------------------------------------------------------

    @property
    def run_job_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/jobs/{self.run_job}"

    @property
    def location_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


def database_name(stack: str) -> str:
    """The stack's Firestore database (one for every job; 4-63 characters)."""
    return f"{NAME_PREFIX}-{stack}-batch"


def repository_name(stack: str) -> str:
    """The stack's Artifact Registry repository for the node image."""
    return f"{NAME_PREFIX}-{stack}-images"


def job_id_for(job: str, idempotency_key: str) -> str:
    """A job id from the caller's idempotency key: the same key for the same job always gives the same id,
    which names both the status document and the Cloud Task (so a resubmit is refused as a duplicate).
    Hashed, as Cloud Tasks recommends for task ids (sequential ids raise latency and errors)."""
    return hashlib.sha256(f"{job}\0{idempotency_key}".encode()).hexdigest()[:32]
