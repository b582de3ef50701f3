"""The batch capability as `fleet plan --stack prod` renders it: an explicit GCP provider, the L4 Cloud Run job,
the queue whose HTTP target is that job's :run with an OAuth token, IAM, Firestore, the bucket, the alerts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.batch.names import BatchNames, database_name, job_id_for
from components.core import context
from fleet.harness import Rendering

JOB = "gcp:cloudrunv2/job:Job"
QUEUE = "gcp:cloudtasks/queue:Queue"
PROVIDER = "pulumi:providers:gcp"


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
    runner = prod.one("gcp:serviceaccount/account:Account", "batch-llm-batch-runner")
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
    database = dev.one("gcp:firestore/database:Database")
    assert database.inputs["deletionPolicy"] == "DELETE"
    assert dev.one("gcp:storage/bucket:Bucket", "batch-smoke-results").inputs["forceDestroy"] is True


def test_queue_targets_the_jobs_run_with_an_oauth_token_and_bounded_retries(prod: Rendering) -> None:
    queue = prod.one(QUEUE)
    job = prod.one(JOB)
    target = queue.inputs["httpTarget"]
    uri = target["uriOverride"]
    assert (uri["scheme"], uri["host"]) == ("HTTPS", "run.googleapis.com")
    assert uri["pathOverride"]["path"] == (
        f"/v2/projects/acme-inference-prod/locations/us-central1/jobs/{job.physical_name}:run"
    )
    dispatcher = prod.one("gcp:serviceaccount/account:Account", "batch-llm-batch-dispatcher")
    assert target["oauthToken"] == {
        "serviceAccountEmail": dispatcher.outputs["email"],
        "scope": "https://www.googleapis.com/auth/cloud-platform",
    }
    assert queue.inputs["retryConfig"] == {
        "maxAttempts": 5,
        "minBackoff": "10s",
        "maxBackoff": "300s",
        "maxDoublings": 3,
        "maxRetryDuration": "0s",
    }
    assert queue.inputs["rateLimits"] == {"maxDispatchesPerSecond": 1, "maxConcurrentDispatches": 10}


def test_iam_gives_each_identity_only_its_part(prod: Rendering) -> None:
    runner = prod.one("gcp:serviceaccount/account:Account", "batch-llm-batch-runner").outputs["member"]
    dispatcher = prod.one("gcp:serviceaccount/account:Account", "batch-llm-batch-dispatcher")
    group = "group:ml-platform@example.com"
    (run_grant,) = prod.of_type("gcp:cloudrunv2/jobIamMember:JobIamMember")
    assert (run_grant.inputs["role"], run_grant.inputs["member"]) == (
        "roles/run.jobsExecutorWithOverrides",
        dispatcher.outputs["member"],
    )
    assert run_grant.inputs["name"] == prod.one(JOB).outputs["name"]
    (enqueue,) = prod.of_type("gcp:cloudtasks/queueIamMember:QueueIamMember")
    assert (enqueue.inputs["role"], enqueue.inputs["member"]) == ("roles/cloudtasks.enqueuer", group)
    (act_as,) = prod.of_type("gcp:serviceaccount/iAMMember:IAMMember")
    assert act_as.inputs["serviceAccountId"] == dispatcher.outputs["name"]
    assert (act_as.inputs["role"], act_as.inputs["member"]) == ("roles/iam.serviceAccountUser", group)
    database = prod.one("gcp:firestore/database:Database")
    for grant in prod.of_type("gcp:projects/iAMMember:IAMMember"):
        assert grant.inputs["role"] == "roles/datastore.user"
        assert grant.inputs["condition"]["expression"] == (
            f'resource.name == "projects/acme-inference-prod/databases/{database.outputs["name"]}"'
        )
    buckets = {
        (g.inputs["bucket"], g.inputs["role"], g.inputs["member"])
        for g in prod.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    }
    results = prod.one("gcp:storage/bucket:Bucket", "batch-llm-batch-results").outputs["name"]
    assert buckets == {
        (results, "roles/storage.objectUser", runner),
        ("acme-inference-prod-prod-models", "roles/storage.objectViewer", runner),
        (results, "roles/storage.objectViewer", group),
    }


def test_status_database_and_private_results_bucket(prod: Rendering) -> None:
    database = prod.one("gcp:firestore/database:Database")
    assert database.inputs["type"] == "FIRESTORE_NATIVE"
    assert database.inputs["locationId"] == "us-central1"
    assert database.inputs["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"
    assert database.options.protect
    bucket = prod.one("gcp:storage/bucket:Bucket", "batch-llm-batch-results")
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.physical_name == "acme-inference-prod-prod-llm-batch"


def test_the_seeds_four_alerts_notify_the_configured_channel(prod: Rendering) -> None:
    (channel,) = prod.of_type("gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["labels"] == {"email_address": "ml-platform-oncall@example.com"}
    policies = {
        p.name.removeprefix("batch-llm-batch-"): p
        for p in prod.of_type("gcp:monitoring/alertPolicy:AlertPolicy")
    }
    assert set(policies) == {"queue-depth", "failure-rate", "p95-seconds", "cold-starts"}
    for policy in policies.values():
        assert policy.inputs["notificationChannels"] == [channel.outputs["name"]]
    threshold = {k: p.inputs["conditions"][0]["conditionThreshold"] for k, p in policies.items()}
    assert threshold["queue-depth"]["thresholdValue"] == 100
    assert 'resource.label.queue_id="fleet-prod-llm-batch"' in threshold["queue-depth"]["filter"]
    assert threshold["failure-rate"]["thresholdValue"] == 0.05
    assert 'metric.label.state="failed"' in threshold["failure-rate"]["filter"]
    assert "denominatorFilter" in threshold["failure-rate"]
    assert threshold["p95-seconds"]["thresholdValue"] == 120
    assert threshold["p95-seconds"]["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_95"
    # Cold starts: the P95 of the agent's own startup figure, not a count of attempts (which grows with load).
    assert threshold["cold-starts"]["thresholdValue"] == 300
    assert threshold["cold-starts"]["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_95"
    startup = prod.one("gcp:logging/metric:Metric", "batch-llm-batch-startup")
    assert startup.inputs["valueExtractor"] == "EXTRACT(jsonPayload.startupSeconds)"
    assert "completed_task_attempt_count" not in json.dumps(threshold)
    outcomes = prod.one("gcp:logging/metric:Metric", "batch-llm-batch-outcomes")
    assert 'jsonPayload.event="fleet.job.finished"' in outcomes.inputs["filter"]


def test_alerts_on_log_based_metrics_wait_ten_minutes_for_them(prod: Rendering) -> None:
    """Cloud Monitoring refuses them for up to 10 minutes after the metric exists (#11102): one Sleep after
    the metrics (its triggers carry their names), and only the policies that read them wait for it."""
    sleep = prod.one("time:index/sleep:Sleep")
    assert sleep.inputs["createDuration"] == "600s"
    metrics = {m.urn for m in prod.of_type("gcp:logging/metric:Metric")}
    assert len(metrics) == 3
    assert set(sleep.property_dependencies["triggers"]) == metrics
    assert sleep.provider == prod.one("pulumi:providers:time").urn
    waiting = {
        p.name.removeprefix("batch-llm-batch-")
        for p in prod.of_type("gcp:monitoring/alertPolicy:AlertPolicy")
        if sleep.urn in p.options.depends_on
    }
    assert waiting == {"failure-rate", "p95-seconds", "cold-starts"}


def test_names_shared_with_the_client_match_the_rendered_resources(prod: Rendering) -> None:
    names = BatchNames("prod", "acme-inference-prod", "us-central1", "llm-batch")
    assert names.run_job == prod.one(JOB).physical_name
    assert names.queue == prod.one(QUEUE).physical_name
    assert names.bucket == prod.one("gcp:storage/bucket:Bucket", "batch-llm-batch-results").physical_name
    dispatcher = prod.one("gcp:serviceaccount/account:Account", "batch-llm-batch-dispatcher")
    assert names.service_account_email(names.dispatcher_account_id) == dispatcher.outputs["email"]
    assert database_name("prod") == prod.one("gcp:firestore/database:Database").physical_name
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
    assert not [
        r for r in rendering.resources if r.type.startswith(("gcp:", "pulumi:providers:gcp", "docker-build"))
    ]


def test_no_batch_module_is_over_600_lines() -> None:
    """One component per file (issue 18): the alerts live in alerts.py, beside the jobs."""
    package = Path(__file__).resolve().parents[2] / "components" / "batch"
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert "alerts.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 600} == {}
