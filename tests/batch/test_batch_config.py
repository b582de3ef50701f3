"""`batchJobs` refused at config time with one line each: what Cloud Run and Cloud Tasks would refuse, and
what this platform will not run (unbounded retries, prod alerts going nowhere, tags GCP cannot label with)."""

from __future__ import annotations

from typing import Any

import pytest

from components.stack import parse_stack_config

MODEL = {"name": "tiny", "source": "meta-llama/Llama-3.1-8B-Instruct"}  # a model the stores hold


def job(**fields: Any) -> dict[str, Any]:
    return {"name": "embed", "model": MODEL, "alerts": {"email": "oncall@example.com"}, **fields}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"batchJobs": [job(taskTimeoutSeconds=7200)]},
            "inference-fleet:batchJobs[0].taskTimeoutSeconds: got 7200; a Cloud Run task with a GPU runs at most "
            "3600 s per attempt",
        ),
        (
            {"batchJobs": [job(maxRetries=11)]},
            "inference-fleet:batchJobs[0].maxRetries: got 11; input should be less than or equal to 10",
        ),
        (
            {"batchJobs": [job(queue={"maxAttempts": -1})]},
            "inference-fleet:batchJobs[0].queue.maxAttempts: got -1; input should be greater than or equal to 1",
        ),
        (
            {"batchJobs": [job(queue={"minBackoffSeconds": 120, "maxBackoffSeconds": 60})]},
            "inference-fleet:batchJobs[0].queue.minBackoffSeconds: got 120; at most queue.maxBackoffSeconds (60)",
        ),
        (
            {"batchJobs": [job(queue={"maxDispatchesPerSecond": 501})]},
            "inference-fleet:batchJobs[0].queue.maxDispatchesPerSecond: got 501; input should be less than or equal to 500",
        ),
        (
            {"batchJobs": [job(queue={"dispatchDeadlineSeconds": 5})]},
            "inference-fleet:batchJobs[0].queue.dispatchDeadlineSeconds: got 5; input should be greater than or equal to 15",
        ),
        (
            {"batchJobs": [{"name": "embed", "model": MODEL}]},
            "inference-fleet:batchJobs[0].alerts.email: required in prod: the batch alerts need somewhere to go",
        ),
        (
            {"batchJobs": [job(model={"name": "tiny", "source": "mistralai/Mistral-7B-v0.3"})]},
            "inference-fleet:batchJobs[0].model.source: got 'mistralai/Mistral-7B-v0.3', which modelStore.models "
            "does not list; the store holds: meta-llama/Llama-3.1-8B-Instruct, qwen2.5:14b (add it there, and load "
            "it with `fleet models sync`)",
        ),
        (
            {"batchJobs": [job(submitters=["ada@example.com"])]},
            "inference-fleet:batchJobs[0].submitters[0]: got 'ada@example.com'; expected an IAM principal: "
            "user:<email>, group:<email>, serviceAccount:<email> or domain:<domain>",
        ),
        (
            {"batchJobs": [job()], "tags": {"owner": "ml-platform", "cost-center": "Inference Team"}},
            "inference-fleet:tags.cost-center: got 'cost-center': 'Inference Team'; with batchJobs, tags are also "
            "GCP labels: keys start with a lower-case letter, keys and values are at most 63 lower-case letters, "
            "digits, '_' or '-'",
        ),
    ],
    ids=[
        "gpu-timeout",
        "retries",
        "unbounded-queue",
        "backoff-order",
        "dispatch-rate",
        "dispatch-deadline",
        "prod-alerts",
        "model-not-in-the-store",
        "submitter",
        "tags-as-labels",
    ],
)
def test_bad_batch_job_gets_one_line(config_problems, changes, expected) -> None:
    assert config_problems("prod", changes) == [expected]


def test_dev_may_omit_the_alert_email(stack_input) -> None:
    stack = stack_input("dev", {"batchJobs": [{"name": "smoke", "model": MODEL}]})
    (parsed,) = parse_stack_config(stack.config, set(stack.secret_keys)).batch_jobs
    assert parsed.alerts.email is None
