"""GCP as far as a render needs it: each resource type's name rules, ids and computed outputs.

Names: limits from the API reference of each resource (Cloud Run, Cloud Tasks, IAM, Cloud Storage, Cloud
Logging). The capabilities that declare GCP resources register them here, and the node image the batch jobs
build with docker-build (pushed to Artifact Registry).
"""

from __future__ import annotations

from typing import Any

from fleet.mocks.registry import MockContext, NameRule, declare, digest, invoke, register

PROJECT_NUMBER = "100000000002"

# Lower-case letters, digits and hyphens, a letter first and no hyphen last (most GCP resource ids).
_GCP_ID = r"[a-z](?:[-a-z0-9]*[a-z0-9])?"
_GCP_ID_WORDS = "lower-case letters, digits and hyphens, a letter first, no hyphen last"
_RUN_JOB = NameRule(63, "Cloud Run Admin API v2 Job name", pattern=_GCP_ID, what=_GCP_ID_WORDS)
# A service's name becomes part of its revisions' names and its URL: at most 49 characters.
_RUN_SERVICE = NameRule(49, "Cloud Run Admin API v2 Service name", pattern=_GCP_ID, what=_GCP_ID_WORDS)
_TASKS_QUEUE = NameRule(
    100, "Cloud Tasks API Queue id", pattern=r"[A-Za-z0-9-]+", what="letters, digits and hyphens"
)
_GCS_BUCKET = NameRule(
    63,
    "Cloud Storage bucket naming (without dots)",
    min_length=3,
    pattern=r"[a-z0-9][a-z0-9_-]*[a-z0-9]",
    what="lower-case letters, digits, '_' and '-', a letter or digit at both ends",
    forbidden_prefixes=("goog",),
)
_SERVICE_ACCOUNT_ID = NameRule(
    30, "IAM CreateServiceAccount accountId", min_length=6, pattern=_GCP_ID, what=_GCP_ID_WORDS
)
_ARTIFACT_REPOSITORY = NameRule(63, "Artifact Registry repository id", pattern=_GCP_ID, what=_GCP_ID_WORDS)
_FIRESTORE_DATABASE = NameRule(
    63, "Firestore database id", min_length=4, pattern=r"[a-z](?:[-a-z0-9]*[a-z0-9])?|\(default\)",
    what=_GCP_ID_WORDS + ", or (default)",
)  # fmt: skip


_LOG_METRIC = NameRule(
    100,
    "Cloud Logging LogMetric name",
    pattern=r"[A-Za-z0-9_.,+!*'()%-][A-Za-z0-9_.,+!*'()%/-]*",
    what="letters, digits and _-.,+!*',()%/, not starting with '/'",
)


@register("gcp:cloudrunv2/job:Job", lowercase=True, rule=_RUN_JOB)
def _run_job(ctx: MockContext) -> dict[str, Any]:
    project = ctx.inputs.get("project") or "project"
    return {
        "uid": ctx.id,
        "location": ctx.region,
        "id": f"projects/{project}/locations/{ctx.region}/jobs/{ctx.physical_name}",
    }


@register("gcp:cloudrunv2/service:Service", lowercase=True, rule=_RUN_SERVICE)
def _run_service(ctx: MockContext) -> dict[str, Any]:
    project = ctx.inputs.get("project") or "project"
    return {
        "uid": ctx.id,
        "location": ctx.region,
        "id": f"projects/{project}/locations/{ctx.region}/services/{ctx.physical_name}",
        # Cloud Run's deterministic URL: https://SERVICE-PROJECT_NUMBER.REGION.run.app
        "uri": f"https://{ctx.physical_name}-{PROJECT_NUMBER}.{ctx.region}.run.app",
    }


# The engine auto-names a queue given no name (`<logical name>-<7 hex>`), anew on every create.
@register("gcp:cloudtasks/queue:Queue", lowercase=True, rule=_TASKS_QUEUE)
def _tasks_queue(ctx: MockContext) -> dict[str, Any]:
    project = ctx.inputs.get("project") or "project"
    return {"id": f"projects/{project}/locations/{ctx.region}/queues/{ctx.physical_name}"}


@register("gcp:storage/bucket:Bucket", lowercase=True, rule=_GCS_BUCKET)
def _gcs_bucket(ctx: MockContext) -> dict[str, Any]:
    return {
        "url": f"gs://{ctx.physical_name}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{ctx.physical_name}",
    }


@register(
    "gcp:serviceaccount/account:Account", name_input="accountId", autonamed=False, rule=_SERVICE_ACCOUNT_ID
)
def _service_account(ctx: MockContext) -> dict[str, Any]:
    project = ctx.inputs.get("project") or "project"
    email = f"{ctx.physical_name}@{project}.iam.gserviceaccount.com"
    return {
        "email": email,
        "member": f"serviceAccount:{email}",
        "name": f"projects/{project}/serviceAccounts/{email}",
        "uniqueId": str(int(digest(ctx.id)[:12], 16)),
    }


declare("gcp:artifactregistry/repository:Repository", name_input="repositoryId", autonamed=False,
        rule=_ARTIFACT_REPOSITORY)  # fmt: skip
declare("gcp:firestore/database:Database", lowercase=True, rule=_FIRESTORE_DATABASE)
declare(
    "gcp:firestore/document:Document",
    name_input="documentId",
    autonamed=False,
    rule=NameRule(
        1500,
        "Firestore document ID",
        pattern=r"(?!\.\.?$)(?!__.*__$)[^/]+",
        what="no '/', not '.' or '..', not __name__-style",
    ),
)


# Resources without a name of their own (bindings, API enablements) or named by the server.
for _token in (
    "gcp:projects/service:Service",
    "gcp:projects/iAMMember:IAMMember",
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:serviceaccount/iAMMember:IAMMember",
    "gcp:cloudrunv2/jobIamMember:JobIamMember",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
    "gcp:firestore/field:Field",
    "gcp:cloudtasks/queueIamMember:QueueIamMember",
):
    declare(_token, name_input=None)


@register("gcp:monitoring/notificationChannel:NotificationChannel", name_input=None)
def _notification_channel(ctx: MockContext) -> dict[str, Any]:
    project = ctx.inputs.get("project") or "project"
    return {"name": f"projects/{project}/notificationChannels/{int(digest(ctx.id)[:12], 16)}"}


@register("gcp:monitoring/alertPolicy:AlertPolicy", name_input=None)
def _alert_policy(ctx: MockContext) -> dict[str, Any]:
    project = ctx.inputs.get("project") or "project"
    return {"name": f"projects/{project}/alertPolicies/{int(digest(ctx.id)[:12], 16)}"}


declare("gcp:logging/metric:Metric", autonamed=False, rule=_LOG_METRIC)


# docker-build pushes the node image to Artifact Registry; the registry answers with the image's digest.
@register("docker-build:index:Image", name_input=None)
def _image(ctx: MockContext) -> dict[str, Any]:
    tags = ctx.inputs.get("tags") or []
    tag = tags[0] if tags and isinstance(tags[0], str) else f"{ctx.args.name}:latest"
    image_digest = f"sha256:{digest(f'{ctx.id}:{tag}')}"
    return {"digest": image_digest, "ref": f"{tag}@{image_digest}"}


@invoke("gcp:organizations/getProject:getProject")
def _project(args: dict[str, Any], region: str) -> dict[str, Any]:
    project = str(args.get("projectId") or "")
    return {"projectId": project, "number": PROJECT_NUMBER, "name": project, "id": f"projects/{project}"}


@invoke("gcp:organizations/getClientConfig:getClientConfig")
def _client_config(args: dict[str, Any], region: str) -> dict[str, Any]:
    # The deployer's short-lived OAuth token (ESC's gcp-login); a stand-in here.
    return {"accessToken": "ya29.offline-render-token", "project": "", "region": region, "id": "client"}


def common_outputs(token: str, physical: str, region: str) -> dict[str, Any]:
    """GCP resources report their own name; nothing is common beyond it."""
    return {}
