"""Batch path against the fakes: `fleet jobs submit` -> Cloud Tasks dispatcher -> jobs:run ->
`fleet-agent job` with real llama.cpp (a tiny model, CPU) -> status `succeeded`; N jobs one after another.

Prints one JSON object: submit-to-running and submit-to-succeeded seconds (from the status document's own
timestamps: submittedAt, the attempt's startedAt, finishedAt), and each stack's worst-case time before Cloud
Tasks gives up a dispatch, computed from its queue's retry config (the `batchQueueGiveUpSeconds` budget).

    uv run python bench/batch.py [--jobs 5]
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
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "items_per_job": 8,
                "submit_to_running_s": summary(running),
                "submit_to_succeeded_s": summary(succeeded),
                "queue_give_up_worst_case_s": give_up,
                "where": "fakes on 127.0.0.1, llama.cpp on CPU (tiny model); a real L4 adds instance start",
            }
        )
    )


if __name__ == "__main__":
    main()
