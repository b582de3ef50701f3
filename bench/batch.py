"""Batch path against the fakes: `fleet jobs submit` -> Cloud Tasks dispatcher -> the admission check
(`fleet-agent dispatch`) -> jobs:run -> `fleet-agent job` with real llama.cpp (a tiny model, CPU) -> status
`succeeded`; N jobs one after another, then a burst of B submissions at once.

Prints one JSON object: submit-to-running and submit-to-succeeded seconds (from the status document's own
timestamps: submittedAt, the attempt's startedAt, finishedAt), each stack's worst-case time before Cloud
Tasks gives up a dispatch, computed from its queue's retry config (the `batchQueueGiveUpSeconds` budget),
and for the burst: the most executions running at once against the job's cap (goal: never above it), the
waits admission made, and how many jobs ended without a final status (goal 0).

    uv run python bench/batch.py [--jobs 5] [--burst 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The batch test kit as pytest imports it (package `batch` under tests/: a site package owns `tests`).
sys.path.insert(0, str(ROOT / "tests"))

from batch.world import BatchWorld  # noqa: E402

from fleet.cli import main as fleet  # noqa: E402
from fleet.harness import render  # noqa: E402
from fleet.stackfile import load_stack  # noqa: E402
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama  # noqa: E402


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


def cli(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fleet(["jobs", *args, "--stack", "dev", "--job", "smoke", "-C", str(ROOT)])
    if code != 0:
        raise SystemExit(f"fleet jobs {args[0]} exited {code}: {out.getvalue()}")
    return json.loads(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    renderings = {stack: render(load_stack(ROOT, stack)) for stack in ("dev", "prod")}
    give_up = {
        f"{stack}/{job}": seconds
        for stack, rendering in renderings.items()
        for job, seconds in rendering.outputs["budgets"]["batchQueueGiveUpSeconds"].items()
    }
    running, succeeded = [], []
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        model = write_tiny_llama(directory / "tiny.gguf")
        with BatchWorld(renderings["dev"], model) as world:
            os.environ.pop("GOOGLE_OAUTH_ACCESS_TOKEN", None)
            os.environ.update(world.client_environ(directory))
            items = directory / "items.jsonl"
            items.write_text(
                "".join(json.dumps({"prompt": f"hello {i}", "max_tokens": 16}) + "\n" for i in range(8))
            )
            for n in range(args.jobs):
                job_id = cli("submit", "--input", str(items), "--idempotency-key", f"bench-{n}")["jobId"]
                status = cli("wait", job_id, "--timeout", "120")
                assert status["state"] == "succeeded", status
                running.append(status["timings"]["queueSeconds"])
                succeeded.append(status["timings"]["totalSeconds"])
            sequential_executions = len(world.run.executions)
            one = directory / "one.jsonl"
            one.write_text(json.dumps({"prompt": "hello", "max_tokens": 4}) + "\n")
            burst_ids = [
                cli("submit", "--input", str(one), "--idempotency-key", f"burst-{n}")["jobId"]
                for n in range(args.burst)
            ]
            final = [
                cli("wait", job_id, "--timeout", str(60 + 20 * args.burst))["state"] for job_id in burst_ids
            ]
            waits = sum(1 for name in world.tasks.tasks if "-w" in name.rsplit("/", 1)[-1])
            burst = {
                "submissions": args.burst,
                "cap": world.max_running,
                "max_executions_running_at_once": world.run.max_running,
                "executions": len(world.run.executions) - sequential_executions,
                "succeeded": final.count("succeeded"),
                "failed": final.count("failed"),
                "without_final_status": sum(1 for state in final if state not in ("succeeded", "failed")),
                "admission_waits": waits,
                # Waiting for a GPU answers 200: none of the queue's attempts fails for it.
                "dispatch_attempts_failed": sum(
                    1 for t in world.tasks.tasks.values() for _, code in t.attempts if code != 200
                ),
            }
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "items_per_job": 8,
                "submit_to_running_s": summary(running),
                "submit_to_succeeded_s": summary(succeeded),
                "queue_give_up_worst_case_s": give_up,
                "burst": burst,
                "where": "fakes on 127.0.0.1, llama.cpp on CPU (tiny model); a real L4 adds instance start",
            }
        )
    )


if __name__ == "__main__":
    main()
