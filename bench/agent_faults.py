"""How fast the agent sees faults, with its default probe settings, against real llama.cpp:
seconds from an engine crash (SIGKILL) to not-ready, from a wedge (SIGSTOP) to degraded, and from
a spot interruption notice (a fake IMDSv2 on loopback) to not-ready and to drained, with a
streaming request in flight that must complete intact before the drained-hook fires.

    uv run python bench/agent_faults.py [--crash-trials 3] [--wedge-trials 2]

Wedges run first: every restart adds to the supervisor's backoff until the engine has been healthy
for two minutes, and the recovery time should show one fault's backoff, not the bench's pile-up.
The agent runs as its own process (`fleet-agent run`), the way systemd runs it on a node; the bench
polls its HTTP endpoints every 5 ms. Prints each trial, then a JSON object as the last line.
Goals: crash_to_unready_s <= 1, wedge_to_degraded_s <= 15, notice_to_unready_s <= 1, and the
in-flight request done within the notice's deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node_image.agent.tests.agent_testkit.fake_metadata import FakeImds, WebhookReceiver  # noqa: E402
from node_image.agent.tests.agent_testkit.harness import (  # noqa: E402
    LLAMA_SERVER,
    AgentProcess,
    completion,
    generated_tokens,
)
from node_image.agent.tests.agent_testkit.net import free_port, serving, wait_for  # noqa: E402
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama  # noqa: E402

API_KEY = "bench-key"
POLL_S = 0.005
STREAM_TOKENS = 4000
NOTICE_LEAD_S = 120  # AWS gives two minutes


def poll_until(condition, timeout: float, what: str) -> float:
    """Seconds until `condition()` holds, polling every 5 ms."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return time.perf_counter() - start
        time.sleep(POLL_S)
    sys.exit(f"timed out after {timeout} s waiting for {what}")


def crash_trial(agent: AgentProcess) -> float:
    pid = agent.wait_ready()["engine"]["pid"]
    os.kill(pid, signal.SIGKILL)
    return poll_until(lambda: not agent.ready(), 10, "not-ready after SIGKILL")


def wedge_trial(agent: AgentProcess) -> tuple[float, float]:
    pid = agent.wait_ready()["engine"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        degraded = poll_until(lambda: agent.status()["state"] == "degraded", 60, "degraded after SIGSTOP")
        recovered = degraded + poll_until(
            lambda: (s := agent.status())["state"] == "ready" and s["engine"]["pid"] != pid,
            120,
            "a new engine",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return degraded, recovered


def notice_trial(agent: AgentProcess, imds: FakeImds, hook: WebhookReceiver) -> dict:
    agent.wait_ready()
    body = completion(max_tokens=STREAM_TOKENS, stream=True)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    chunks: list[bytes] = []
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", agent.url + "/v1/completions", json=body, headers=headers) as response,
    ):
        stream = response.iter_raw()
        chunks.append(next(stream))
        notice_at = time.time()
        deadline = notice_at + NOTICE_LEAD_S
        imds.spot_action = {
            "action": "terminate",
            "time": datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        noticed = time.perf_counter()
        unready = poll_until(lambda: not agent.ready(), 10, "not-ready after the notice")
        chunks.extend(stream)  # the rest of the stream, as the client reads it
        stream_done = time.perf_counter() - noticed
    drained = poll_until(lambda: len(hook.calls) == 1, 60, "the drained-hook") + (
        time.perf_counter() - noticed
    )
    drained -= time.perf_counter() - noticed - drained if False else 0.0
    text = b"".join(chunks).decode("utf-8", "replace")
    intact = generated_tokens(text) == STREAM_TOKENS
    report = wait_for(lambda: (s := agent.status())["state"] == "stopped" and s, 30, "stopped")["drain"]
    return {
        "notice_to_unready_s": unready,
        "notice_to_drained_s": report["hooks"][0]["at"] - notice_at,
        "client_stream_done_s": stream_done,
        "inflight_completed": intact and report["inflight_left"] == 0 and report["inflight_at_notice"] == 1,
        "drained_before_deadline": report["hooks"][0]["at"] < deadline,
        "hook_payload_inflight_left": hook.calls[0]["inflight_left"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--crash-trials", type=int, default=3)
    parser.add_argument("--wedge-trials", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agent-faults-bench-"))
    model = write_tiny_llama(work / "tiny.gguf")
    (work / "key").write_text(API_KEY)
    imds, hook = FakeImds(), WebhookReceiver()
    with serving(imds) as metadata, serving(hook) as receiver:
        config = {
            "node": {"id": "bench", "accelerator": "cpu"},
            "engine": {"kind": "llamacpp", "models": ["tiny"], "model_path": str(model), "port": free_port(),
                       "executable": LLAMA_SERVER, "parallel": 2},
            "server": {"host": "127.0.0.1", "port": free_port(), "api_key_file": str(work / "key")},
            "preemption": {"provider": "aws", "aws_imds_url": metadata.url},
            "drain": {"hooks": [{"kind": "webhook", "url": receiver.url + "/drained"}]},
        }  # fmt: skip
        agent = AgentProcess(work, config)
        try:
            wedges = []
            for trial in range(1, args.wedge_trials + 1):
                degraded, recovered = wedge_trial(agent)
                wedges.append((degraded, recovered))
                print(f"wedge {trial}: degraded after {degraded:.2f} s, ready again after {recovered:.2f} s")
            crashes = []
            for trial in range(1, args.crash_trials + 1):
                crashes.append(crash_trial(agent))
                print(f"crash {trial}: not ready after {crashes[-1]:.3f} s")
            notice = notice_trial(agent, imds, hook)
            print(
                f"notice: not ready after {notice['notice_to_unready_s']:.3f} s, drained-hook after "
                f"{notice['notice_to_drained_s']:.2f} s, stream intact: {notice['inflight_completed']}"
            )
        finally:
            agent.stop()
    print(
        json.dumps(
            {
                "crash_to_unready_s": round(statistics.median(crashes), 3),
                "wedge_to_degraded_s": round(statistics.median(w[0] for w in wedges), 2),
                "wedge_to_ready_again_s": round(statistics.median(w[1] for w in wedges), 2),
                "notice_to_unready_s": round(notice["notice_to_unready_s"], 3),
                "notice_to_drained_s": round(notice["notice_to_drained_s"], 2),
                "inflight_completed": notice["inflight_completed"],
                "drained_before_deadline": notice["drained_before_deadline"],
                "trials": {
                    "crash_to_unready_s": [round(x, 3) for x in crashes],
                    "wedge_to_degraded_s": [round(w[0], 2) for w in wedges],
                },
                "agent_exit_code": agent.process.returncode,
                "goals": {"crash_to_unready_s": 1.0, "wedge_to_degraded_s": 15.0, "notice_to_unready_s": 1.0},
            }
        )
    )


if __name__ == "__main__":
    main()
