"""End to end on 127.0.0.1: `fleet jobs submit` -> status document and named task -> the fake Cloud Tasks
dispatcher (the rendered queue's retry config, OAuth as its service account) -> jobs:run on the fake Run Admin
API -> `fleet-agent job` in front of real llama.cpp -> results in the bucket, status in Firestore.

The dev stack's one batch job is rendered once; its declared resources configure the fakes (world.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main as fleet
from fleet.harness import Rendering, render
from fleet.stackfile import load_stack
from node_image.agent.tests.agent_testkit.net import wait_for

from .gcp_fakes import Execution, retry_delay_s
from .world import CRASHING_ENGINE, BatchWorld

PROJECT_DIR = Path(__file__).resolve().parents[2]
JOB = "smoke"


@pytest.fixture(scope="module")
def dev() -> Rendering:
    return render(load_stack(PROJECT_DIR, "dev"))


@pytest.fixture
def world(dev: Rendering, tiny_model: Path) -> Iterator[BatchWorld]:
    with BatchWorld(dev, tiny_model) as running:
        yield running


class Cli:
    """`fleet jobs ...` run in-process with the world's client environment."""

    def __init__(
        self, world: BatchWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN", raising=False)
        for key, value in world.client_environ(tmp_path).items():
            monkeypatch.setenv(key, value)
        self.tmp_path = tmp_path
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = fleet(["jobs", *args, "--stack", "dev", "--job", JOB, "-C", str(PROJECT_DIR)])
        captured = self.capsys.readouterr()
        return code, captured.out or captured.err

    def submit(self, lines: list[dict[str, Any]] | str, key: str | None = None) -> dict[str, Any]:
        path = self.tmp_path / f"input-{key or 'x'}.jsonl"
        path.write_text(
            lines if isinstance(lines, str) else "".join(json.dumps(line) + "\n" for line in lines)
        )
        code, out = self("submit", "--input", str(path), *(["--idempotency-key", key] if key else []))
        assert code == 0, out
        return json.loads(out)

    def wait(self, job_id: str) -> tuple[int, dict[str, Any]]:
        code, out = self("wait", job_id, "--timeout", "90")
        return code, json.loads(out)


@pytest.fixture
def cli(world: BatchWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Cli:
    return Cli(world, tmp_path, monkeypatch, capsys)


def prompts(count: int, max_tokens: int = 8) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}", "prompt": f"hello {i}", "max_tokens": max_tokens, "ignore_eos": True}
        for i in range(count)
    ]


def test_submit_runs_to_succeeded_with_results_status_and_receipt(world: BatchWorld, cli: Cli) -> None:
    items = [*prompts(2), {"id": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}]
    submitted = cli.submit(items, key="first")
    assert submitted["duplicate"] is False and submitted["state"] == "queued"
    job_id = submitted["jobId"]

    code, status = cli.wait(job_id)
    assert code == 0, status
    assert status["state"] == "succeeded"
    assert status["attempt"] == 1
    assert [a["state"] for a in status["attempts"]] == ["succeeded"]
    assert status["items"] == {"total": 3, "succeeded": 3, "failed": 0}
    assert status["receipt"]["engine"] == "llamacpp"
    assert status["receipt"]["model"] == "qwen2.5-0.5b-instruct"  # the dev job's served name
    assert status["receipt"]["gpu"] == "none"  # a CPU stand-in says so
    assert status["receipt"]["execution"].startswith(world.job_name)
    for key in ("queueSeconds", "engineReadySeconds", "runSeconds", "totalSeconds"):
        assert status["timings"][key] >= 0, key

    bucket, name = status["resultUri"].removeprefix("gs://").split("/", 1)
    assert bucket == world.bucket and name == f"results/{job_id}/output.jsonl"
    data, content_type = world.storage.objects[(bucket, name)]
    assert content_type == "application/x-ndjson"
    results = {line["id"]: line for line in map(json.loads, data.decode().splitlines())}
    assert results["p0"]["response"]["usage"]["completion_tokens"] == 8
    assert results["chat"]["response"]["choices"][0]["message"]["role"] == "assistant"

    # One dispatch (as the queue's service account, to the job's :run), one execution, one attempt.
    task = world.task(job_id)
    assert [code for _, code in task.attempts] == [200] and task.outcome == "done"
    (execution,) = world.finished_executions()
    assert execution.exit_codes == [0]
    assert execution.overrides["containerOverrides"][0]["env"] == [{"name": "FLEET_JOB_ID", "value": job_id}]


def test_duplicate_submit_is_a_no_op(world: BatchWorld, cli: Cli) -> None:
    first = cli.submit(prompts(1), key="same-key")
    again = cli.submit(prompts(1), key="same-key")  # still queued: the task name is taken
    assert again == {**first, "duplicate": True}
    code, status = cli.wait(first["jobId"])
    assert code == 0 and status["state"] == "succeeded"
    late = cli.submit(prompts(1), key="same-key")  # finished: nothing is enqueued at all
    assert late == {"jobId": first["jobId"], "duplicate": True, "state": "succeeded"}
    assert len(world.finished_executions()) == 1
    assert len(world.tasks.tasks) == 1


def test_engine_crash_is_retried_then_succeeds(
    dev: Rendering, tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    with BatchWorld(dev, tiny_model, engine=CRASHING_ENGINE) as world:
        cli = Cli(world, tmp_path, monkeypatch, capsys)
        job_id = cli.submit(prompts(12, max_tokens=512), key="crash")["jobId"]
        code, status = cli.wait(job_id)
        (execution,) = world.finished_executions()
    assert code == 0, status
    assert execution.exit_codes == [1, 0]  # Cloud Run retried the failed attempt (maxRetries 1 in dev)
    first, second = status["attempts"]
    assert first["state"] == "retrying" and first["error"].startswith("the engine crashed mid-batch")
    assert second["state"] == "succeeded"
    assert status["state"] == "succeeded" and status["attempt"] == 2
    assert status["items"]["succeeded"] == 12


def test_bad_input_fails_once_without_retry(world: BatchWorld, cli: Cli) -> None:
    # An inline input is checked by `fleet jobs submit`; one in a bucket only the job can read.
    world.storage.objects[(world.bucket, "inputs/bad.jsonl")] = (
        b'{"id": "a", "prompt": "fine"}\nthis is not json\n',
        "application/x-ndjson",
    )
    code, out = cli(
        "submit", "--input-uri", f"gs://{world.bucket}/inputs/bad.jsonl", "--idempotency-key", "bad"
    )
    assert code == 0, out
    job_id = json.loads(out)["jobId"]
    code, status = cli.wait(job_id)
    assert code == 1
    assert status["state"] == "failed"
    assert status["error"] == {
        "reason": "bad_input",
        "message": "line 2: not JSON (Expecting value)",
        "retryable": False,
    }
    assert [a["attempt"] for a in status["attempts"]] == [1]
    (execution,) = world.finished_executions()
    assert execution.exit_codes == [0]  # exit 0: Cloud Run does not run it again
    assert set(world.storage.objects) == {(world.bucket, "inputs/bad.jsonl")}  # no results


def test_failed_dispatch_is_retried_after_the_queues_backoff(world: BatchWorld, cli: Cli) -> None:
    world.run.unavailable_next = 1  # jobs:run answers 503 once
    job_id = cli.submit(prompts(1), key="dispatch")["jobId"]
    code, status = cli.wait(job_id)
    assert code == 0 and status["state"] == "succeeded"
    task = world.task(job_id)
    (first, failed), (second, ok) = task.attempts
    assert (failed, ok) == (503, 200)
    assert second - first >= retry_delay_s(world.queue, 1)  # the rendered queue's minBackoff
    assert len(world.finished_executions()) == 1


def attempt_claimed(world: BatchWorld, execution: Execution, attempt: int) -> bool:
    """Whether the agent has claimed Cloud Run's attempt `attempt` (from 0) in the job's status document: from
    then on it records a SIGTERM as a stopped attempt."""
    (override,) = execution.overrides["containerOverrides"]
    job_id = next(e["value"] for e in override["env"] if e["name"] == "FLEET_JOB_ID")
    try:
        return world.document(job_id).get("attempt") == attempt + 1
    except RuntimeError:  # the fake's server thread is writing that document this instant
        return False


def test_an_attempt_stopped_at_the_task_timeout_is_retried_then_failed(world: BatchWorld, cli: Cli) -> None:
    # Cloud Run sends SIGTERM at the task timeout; the batch below takes longer. The timeout runs from the
    # agent's claim of each attempt, so that a slow start cannot use it up before anything is recorded.
    world.run_job.timeout_s = 2.0
    world.run.timeout_from = lambda execution, attempt: attempt_claimed(world, execution, attempt)
    # The agent's stop is made to fit Cloud Run's 10 s before SIGKILL (JOB_ENGINE_STOP_GRACE_S): a timing,
    # not what this test checks, so a busy machine gets a guard instead.
    world.run.kill_grace_s = 120.0
    job_id = cli.submit(prompts(200, max_tokens=512), key="slow")["jobId"]
    world.wait_for_execution(timeout=60)
    # Each attempt: the agent's start, 2 s, the engine's stop (at most 5 s), the status write.
    (execution,) = world.finished_executions(timeout=300)
    code, out = cli("status", job_id)
    status = json.loads(out)
    assert code == 0 and status["state"] == "failed"
    assert execution.exit_codes == [1, 1]  # both attempts ask for a retry; maxRetries 1 ends it
    assert [a["state"] for a in status["attempts"]] == ["retrying", "failed"]
    assert all("SIGTERM" in a["error"] for a in status["attempts"])
    assert status["error"]["retryable"] is True


def test_executions_never_exceed_the_cap_and_a_waiting_job_spends_no_attempt(
    world: BatchWorld, cli: Cli
) -> None:
    """jobs:run answers at once, so the queue alone would start one GPU execution per dispatch. The
    admission check starts one only below the cap; the job it refuses waits in a task of its own."""
    cap = world.max_running
    release = world.hold_executions()  # instances slow to start: the first `cap` jobs hold their GPUs
    ids = [cli.submit(prompts(1), key=f"burst-{n}")["jobId"] for n in range(cap + 1)]
    waiting = wait_for(
        lambda: next((i for i in ids if f"{world.queue.name}/tasks/{i}-w1" in world.tasks.tasks), None),
        60,
        "a job made to wait for a free GPU",
    )
    assert len(world.run.executions) == cap
    # The wait task exists before the admission answers and names it in the job's document.
    wait_for(lambda: world.task(waiting).outcome is not None, 60, "the refused dispatch answered")
    assert world.task(waiting).outcome == "done"  # answered 200: not one of the queue's attempts
    wait_for(
        lambda: world.document(waiting)["task"] == f"{world.queue.name}/tasks/{waiting}-w1",
        60,
        "the job's document naming its wait task",
    )
    assert world.document(waiting)["state"] == "queued"
    release.set()
    for job_id in ids:
        code, status = cli.wait(job_id)
        assert code == 0 and status["state"] == "succeeded", status
    assert world.run.max_running == cap
    assert len(world.finished_executions()) == cap + 1
    # The agent's finished line carries its startup figure, which the cold-start metric reads.
    finished = [
        e for x in world.run.executions for e in x.log_entries if e.get("event") == "fleet.job.finished"
    ]
    assert len(finished) == cap + 1 and all(e["startupSeconds"] >= 0 for e in finished)


def test_a_dispatch_refused_for_gpu_quota_waits_and_runs_later(
    dev: Rendering, tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    with BatchWorld(dev, tiny_model, gpu_quota=1) as world:  # the project's quota, below the job's cap
        cli = Cli(world, tmp_path, monkeypatch, capsys)
        release = world.hold_executions()
        first = cli.submit(prompts(1), key="quota-1")["jobId"]
        world.wait_for_execution(timeout=60)
        second = cli.submit(prompts(1), key="quota-2")["jobId"]
        # The wait task is created while the refused dispatch is answered; its answer is recorded after.
        wait_for(
            lambda: (
                f"{world.queue.name}/tasks/{second}-w1" in world.tasks.tasks and world.task(second).attempts
            ),
            60,
            "the refused job's wait, and its dispatch answered",
        )
        assert 429 in world.run.calls  # RESOURCE_EXHAUSTED from jobs:run
        assert world.task(second).attempts[-1][1] == 200  # the refused attempt was not spent
        release.set()
        for job_id in (first, second):
            code, status = cli.wait(job_id)
            assert code == 0 and status["state"] == "succeeded", status
        assert world.run.max_running == 1


def test_a_task_dropped_after_its_attempts_shows_failed(world: BatchWorld, cli: Cli) -> None:
    world.run.unavailable_next = 1000  # jobs:run keeps failing: every attempt of the queue is spent
    job_id = cli.submit(prompts(1), key="dropped")["jobId"]
    wait_for(lambda: world.task(job_id).outcome == "dropped", 60, "the queue to drop the task")
    assert len(world.task(job_id).attempts) == world.queue.max_attempts
    assert world.document(job_id)["state"] == "queued"  # nobody told the document
    code, out = cli("status", job_id)
    status = json.loads(out)
    assert code == 0 and status["state"] == "failed"
    assert status["error"]["reason"] == "dropped"
    assert world.document(job_id)["state"] == "failed"  # recorded, not only shown
    assert not world.run.executions


def test_a_submit_stopped_before_its_task_exists_is_not_read_as_dropped(
    world: BatchWorld, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status document is written before the task: until the task exists the document names none, so
    `status` in between (or after a submit that stopped there) shows the job queued, never dropped; the same
    submit again completes it."""
    from fleet import jobs

    def connection_lost(self: jobs.JobsClient, task_name: str, job_id: str) -> bool:
        raise jobs.JobsError("creating the task: connection lost", jobs.EXIT_API)

    with monkeypatch.context() as patched:
        patched.setattr(jobs.JobsClient, "_enqueue", connection_lost)
        code, out = cli("submit", "--input", str(write_input(cli, "half")), "--idempotency-key", "half")
    assert code != 0, out
    job_id = next(path for path in world.firestore.documents if "/documents/jobs/" in path).rsplit("/", 1)[-1]
    assert "task" not in world.document(job_id)
    code, out = cli("status", job_id)
    assert code == 0 and json.loads(out)["state"] == "queued", out
    assert world.document(job_id)["state"] == "queued"  # not recorded as dropped either
    again = cli.submit(prompts(1), key="half")
    assert again["jobId"] == job_id and not again["duplicate"]
    code, status = cli.wait(job_id)
    assert code == 0 and status["state"] == "succeeded", status


def write_input(cli: Cli, key: str) -> Path:
    path = cli.tmp_path / f"input-{key}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in prompts(1)))
    return path
