"""The batch capability as `fleet plan --stack prod` renders it: an explicit GCP provider, the L4 Cloud Run job,
the queue whose HTTP target is that job's :run with an OAuth token, IAM, Firestore, the bucket, the alerts."""

from __future__ import annotations

import json

import pytest

from components.batch.names import BatchNames, database_name, job_id_for
from components.core import context
from components.core.catalog.resource_types import (
    ALERT_POLICY,
    CLOUD_RUN_JOB,
    CLOUD_RUN_JOB_IAM_MEMBER,
    CLOUD_RUN_SERVICE,
    CLOUD_RUN_SERVICE_IAM_MEMBER,
    CLOUD_TASKS_QUEUE,
    CLOUD_TASKS_QUEUE_IAM_MEMBER,
    FIRESTORE_DATABASE,
    FIRESTORE_DOCUMENT,
    FIRESTORE_FIELD,
    GCP_PROVIDER,
    GCS_BUCKET,
    GCS_BUCKET_IAM_MEMBER,
    LOG_METRIC,
    NOTIFICATION_CHANNEL,
    PROJECT_IAM_MEMBER,
    SERVICE_ACCOUNT,
    SERVICE_ACCOUNT_IAM_MEMBER,
    TIME_PROVIDER,
    TIME_SLEEP,
)
from fleet.harness import Rendering

JOB = CLOUD_RUN_JOB
QUEUE = CLOUD_TASKS_QUEUE
PROVIDER = GCP_PROVIDER


@pytest.fixture
def prod(render) -> Rendering:
    return render("prod")


def batch_resources(rendering: Rendering) -> list:
    (top,) = [r for r in rendering.of_type("inference-fleet:batch:BatchJobs")]
    return rendering.descendants(top)


def test_every_gcp_resource_goes_through_the_explicit_gcp_provider(prod: Rendering) -> None:
    provider = prod.one(PROVIDER, "gcp-us-central1")
    assert provider.inputs["project"] == "acme-inference-prod"
    assert provider.inputs["region"] == "us-central1"
    labels = json.loads(provider.inputs["defaultLabels"])  # provider inputs travel JSON-encoded
    assert labels["tier"] == "prod" and labels["owner"] == "ml-platform"  # what the policy pack reads
    gcp = [r for r in batch_resources(prod) if r.custom and r.type.startswith("gcp:")]
    assert len(gcp) > 20
    assert {r.provider for r in gcp} == {provider.urn}


def test_the_job_is_an_l4_gpu_job_with_retries_timeout_and_its_own_identity(prod: Rendering) -> None:
    job = prod.one(JOB)
    assert job.physical_name == "fleet-prod-llm-batch"
    assert job.inputs["deletionProtection"] is True
    task = job.inputs["template"]["template"]
    assert task["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert task["gpuZonalRedundancyDisabled"] is True
    assert task["maxRetries"] == 2 and task["timeout"] == "600s"
    (container,) = task["containers"]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert container["args"] == ["job"]
    runner = prod.one(SERVICE_ACCOUNT, "batch-llm-batch-runner")
    assert task["serviceAccount"] == runner.outputs["email"]
    # The image is the node image built by this stack, pinned by the digest the registry answered.
    image = prod.one("docker-build:index:Image")
    assert image.inputs["dockerfile"] == {"location": "node_image/Dockerfile"}
    assert image.inputs["buildArgs"] == {"ENGINE": "vllm"}
    assert container["image"] == image.outputs["ref"]
    assert "@sha256:" in container["image"]
    env = {e["name"]: e["value"] for e in container["envs"]}
    # The model from the model store's bucket (a MountSpec), mounted read-only at /models.
    assert env["FLEET_AGENT__ENGINE__MODEL_PATH"] == "/models/meta-llama/Llama-3.1-8B-Instruct"
    assert env["FLEET_JOB_DATABASE"] == database_name("prod")
    (volume,) = task["volumes"]
    assert volume["gcs"] == {"bucket": "acme-inference-prod-prod-models", "readOnly": True}


def test_dev_job_can_be_destroyed(render) -> None:
    dev = render("dev")
    assert dev.one(JOB).inputs["deletionProtection"] is False
    database = dev.one(FIRESTORE_DATABASE)
    assert database.inputs["deletionPolicy"] == "DELETE"
    assert dev.one(GCS_BUCKET, "batch-smoke-results").inputs["forceDestroy"] is True


def test_queue_targets_the_admission_check_one_dispatch_at_a_time_with_bounded_retries(
    prod: Rendering,
) -> None:
    queue = prod.one(QUEUE)
    service = prod.one(CLOUD_RUN_SERVICE)
    job = prod.one(JOB)
    target = queue.inputs["httpTarget"]
    uri = target["uriOverride"]
    assert f"https://{uri['host']}" == service.outputs["uri"]
    assert (uri["scheme"], uri["uriOverrideEnforceMode"]) == ("HTTPS", "ALWAYS")
    dispatcher = prod.one(SERVICE_ACCOUNT, "batch-llm-batch-dispatcher")
    assert target["oidcToken"] == {
        "serviceAccountEmail": dispatcher.outputs["email"],
        "audience": service.outputs["uri"],
    }
    assert queue.inputs["retryConfig"] == {
        "maxAttempts": 5,
        "minBackoff": "10s",
        "maxBackoff": "300s",
        "maxDoublings": 3,
        "maxRetryDuration": "0s",
    }
    # One dispatch at a time: each admission counts the running executions before it starts one.
    assert queue.inputs["rateLimits"] == {"maxDispatchesPerSecond": 1, "maxConcurrentDispatches": 1}
    # The admission service: the node image in dispatch mode, no GPU, the job's cap in its env.
    (container,) = service.inputs["template"]["containers"]
    assert container["args"] == ["dispatch"]
    assert container["image"] == job.inputs["template"]["template"]["containers"][0]["image"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env["FLEET_DISPATCH_MAX_RUNNING"] == "4"
    assert (
        env["FLEET_DISPATCH_RUN_JOB"]
        == f"projects/acme-inference-prod/locations/us-central1/jobs/{job.physical_name}"
    )
    assert service.inputs["template"]["serviceAccount"] == dispatcher.outputs["email"]


def test_the_queue_is_auto_named_and_the_directory_says_where_it_is(prod: Rendering) -> None:
    """Cloud Tasks keeps a deleted queue's name for up to 3 days: a new queue never reuses one."""
    queue = prod.one(QUEUE)
    assert "name" not in queue.inputs
    assert queue.physical_name.startswith("batch-llm-batch-queue-")
    directory = prod.one(FIRESTORE_DOCUMENT)
    assert (directory.inputs["collection"], directory.inputs["documentId"]) == ("batchJobs", "llm-batch")
    assert json.loads(directory.inputs["fields"]) == {
        "queue": {
            "stringValue": f"projects/acme-inference-prod/locations/us-central1/queues/{queue.physical_name}"
        }
    }
    assert directory.property_dependencies["fields"] == (queue.urn,)


def test_iam_gives_each_identity_only_its_part(prod: Rendering) -> None:
    runner = prod.one(SERVICE_ACCOUNT, "batch-llm-batch-runner").outputs["member"]
    dispatcher = prod.one(SERVICE_ACCOUNT, "batch-llm-batch-dispatcher")
    tasks = dispatcher.outputs["member"]
    group = "group:ml-platform@example.com"
    job = prod.one(JOB)
    job_grants = {(g.inputs["role"], g.inputs["member"]) for g in prod.of_type(CLOUD_RUN_JOB_IAM_MEMBER)}
    assert job_grants == {("roles/run.jobsExecutorWithOverrides", tasks), ("roles/run.viewer", tasks)}
    assert {g.inputs["name"] for g in prod.of_type(CLOUD_RUN_JOB_IAM_MEMBER)} == {job.outputs["name"]}
    (invoke,) = prod.of_type(CLOUD_RUN_SERVICE_IAM_MEMBER)
    assert (invoke.inputs["role"], invoke.inputs["member"]) == ("roles/run.invoker", tasks)
    queue_grants = {
        (g.inputs["role"], g.inputs["member"]) for g in prod.of_type(CLOUD_TASKS_QUEUE_IAM_MEMBER)
    }
    assert queue_grants == {
        ("roles/cloudtasks.enqueuer", group),
        ("roles/cloudtasks.viewer", group),  # `fleet jobs status` reads a queued job's task
        ("roles/cloudtasks.enqueuer", tasks),  # the task of a job made to wait
    }
    act_as = {
        (g.inputs["serviceAccountId"], g.inputs["role"], g.inputs["member"])
        for g in prod.of_type(SERVICE_ACCOUNT_IAM_MEMBER)
    }
    assert act_as == {
        (dispatcher.outputs["name"], "roles/iam.serviceAccountUser", group),
        (dispatcher.outputs["name"], "roles/iam.serviceAccountUser", tasks),
    }
    database = prod.one(FIRESTORE_DATABASE)
    status_grants = prod.of_type(PROJECT_IAM_MEMBER)
    assert {g.inputs["member"] for g in status_grants} == {runner, group, tasks}
    for grant in status_grants:
        assert grant.inputs["role"] == "roles/datastore.user"
        assert grant.inputs["condition"]["expression"] == (
            f'resource.name == "projects/acme-inference-prod/databases/{database.outputs["name"]}"'
        )
    buckets = {
        (g.inputs["bucket"], g.inputs["role"], g.inputs["member"])
        for g in prod.of_type(GCS_BUCKET_IAM_MEMBER)
    }
    results = prod.one(GCS_BUCKET, "batch-llm-batch-results").outputs["name"]
    assert buckets == {
        (results, "roles/storage.objectUser", runner),
        ("acme-inference-prod-prod-models", "roles/storage.objectViewer", runner),
        (results, "roles/storage.objectViewer", group),
    }


def test_status_database_and_private_results_bucket(prod: Rendering) -> None:
    database = prod.one(FIRESTORE_DATABASE)
    assert database.inputs["type"] == "FIRESTORE_NATIVE"
    assert database.inputs["locationId"] == "us-central1"
    assert database.inputs["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"
    assert database.options.protect
    bucket = prod.one(GCS_BUCKET, "batch-llm-batch-results")
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.physical_name == "acme-inference-prod-prod-llm-batch"


def test_results_and_status_documents_expire(prod: Rendering, render) -> None:
    """Versioning (prod) makes the age rule's delete a noncurrent version: a second rule deletes those."""
    bucket = prod.one(GCS_BUCKET, "batch-llm-batch-results")
    assert bucket.inputs["versioning"] == {"enabled": True}
    assert [r["condition"] for r in bucket.inputs["lifecycleRules"]] == [
        {"age": 30},
        {"daysSinceNoncurrentTime": 7},
    ]
    assert all(r["action"] == {"type": "Delete"} for r in bucket.inputs["lifecycleRules"])
    dev = render("dev").one(GCS_BUCKET, "batch-smoke-results")
    assert [r["condition"] for r in dev.inputs["lifecycleRules"]] == [{"age": 30}]  # no versions in dev
    ttl = prod.one(FIRESTORE_FIELD)
    assert (ttl.inputs["collection"], ttl.inputs["field"]) == ("jobs", "expireAt")
    assert ttl.inputs["ttlConfig"] == {} and ttl.inputs["indexConfig"] == {}
    assert ttl.inputs["database"] == prod.one(FIRESTORE_DATABASE).outputs["name"]


def test_the_seeds_four_alerts_notify_the_configured_channel(prod: Rendering) -> None:
    (channel,) = prod.of_type(NOTIFICATION_CHANNEL)
    assert channel.inputs["labels"] == {"email_address": "ml-platform-oncall@example.com"}
    policies = {p.name.removeprefix("batch-llm-batch-"): p for p in prod.of_type(ALERT_POLICY)}
    assert set(policies) == {"queue-depth", "failure-rate", "p95-seconds", "cold-starts"}
    for policy in policies.values():
        assert policy.inputs["notificationChannels"] == [channel.outputs["name"]]
    threshold = {k: p.inputs["conditions"][0]["conditionThreshold"] for k, p in policies.items()}
    assert threshold["queue-depth"]["thresholdValue"] == 100
    queue_id = prod.one(QUEUE).physical_name
    assert f'resource.label.queue_id="{queue_id}"' in threshold["queue-depth"]["filter"]
    assert threshold["failure-rate"]["thresholdValue"] == 0.05
    assert 'metric.label.state="failed"' in threshold["failure-rate"]["filter"]
    assert "denominatorFilter" in threshold["failure-rate"]
    assert threshold["p95-seconds"]["thresholdValue"] == 120
    assert threshold["p95-seconds"]["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_95"
    # Cold starts: the P95 of the agent's own startup figure, not a count of attempts (which grows with load).
    assert threshold["cold-starts"]["thresholdValue"] == 300
    assert threshold["cold-starts"]["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_95"
    startup = prod.one(LOG_METRIC, "batch-llm-batch-startup")
    assert startup.inputs["valueExtractor"] == "EXTRACT(jsonPayload.startupSeconds)"
    assert "completed_task_attempt_count" not in json.dumps(threshold)
    outcomes = prod.one(LOG_METRIC, "batch-llm-batch-outcomes")
    assert 'jsonPayload.event="fleet.job.finished"' in outcomes.inputs["filter"]


def test_alerts_on_log_based_metrics_wait_ten_minutes_for_them(prod: Rendering) -> None:
    """Cloud Monitoring refuses them for up to 10 minutes after the metric exists (#11102): one Sleep after
    the metrics (its triggers carry their names), and only the policies that read them wait for it."""
    sleep = prod.one(TIME_SLEEP)
    assert sleep.inputs["createDuration"] == "600s"
    metrics = {m.urn for m in prod.of_type(LOG_METRIC)}
    assert len(metrics) == 3
    assert set(sleep.property_dependencies["triggers"]) == metrics
    assert sleep.provider == prod.one(TIME_PROVIDER).urn
    waiting = {
        p.name.removeprefix("batch-llm-batch-")
        for p in prod.of_type(ALERT_POLICY)
        if sleep.urn in p.options.depends_on
    }
    assert waiting == {"failure-rate", "p95-seconds", "cold-starts"}


def test_names_shared_with_the_client_match_the_rendered_resources(prod: Rendering) -> None:
    names = BatchNames("prod", "acme-inference-prod", "us-central1", "llm-batch")
    assert names.run_job == prod.one(JOB).physical_name
    assert names.admission_service == prod.one(CLOUD_RUN_SERVICE).physical_name
    assert names.bucket == prod.one(GCS_BUCKET, "batch-llm-batch-results").physical_name
    dispatcher = prod.one(SERVICE_ACCOUNT, "batch-llm-batch-dispatcher")
    assert names.service_account_email(names.dispatcher_account_id) == dispatcher.outputs["email"]
    assert database_name("prod") == prod.one(FIRESTORE_DATABASE).physical_name
    from components.batch import names as names_module

    assert names_module.NAME_PREFIX == context.NAME_PREFIX
    assert job_id_for("llm-batch", "k") == job_id_for("llm-batch", "k") != job_id_for("llm-batch", "k2")


def test_budgets_carry_the_queues_give_up_time_and_the_jobs_worst_case(prod: Rendering) -> None:
    budgets = prod.outputs["budgets"]
    # 5 attempts of at most 30 s each, and backoffs of 10 + 20 + 40 + 80 s between them.
    assert budgets["batchQueueGiveUpSeconds"] == {"llm-batch": 300}
    assert budgets["batchJobWorstCaseSeconds"] == {"llm-batch": 1800}  # 3 attempts x 600 s


def test_a_stack_without_batch_jobs_declares_no_gcp_at_all(render) -> None:
    rendering = render("dev", {"batchJobs": []})
    assert not [r for r in rendering.resources if r.type.startswith(("gcp:", GCP_PROVIDER, "docker-build"))]
