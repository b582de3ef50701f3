"""Draining against the real llama.cpp engine: a spot notice (fake IMDSv2) or SIGTERM while a
streaming request runs turns readiness off at once, lets the stream finish intact, fires the
drained-hook, then stops the engine."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fleet_agent.config import WebhookHook
from fleet_agent.drain import DrainedEvent, WebhookDrainedHook

from .agent_testkit.fake_metadata import FakeImds, WebhookReceiver
from .agent_testkit.harness import (
    STREAM_TOKENS,
    RunningAgent,
    StreamInThread,
    completion,
    generated_tokens,
    llama_config,
    spot_notice,
    write_config,
)
from .agent_testkit.net import serving, wait_for


def test_spot_notice_while_streaming_drains_in_order(tmp_path: Path, tiny_model: Path) -> None:
    imds, hook = FakeImds(), WebhookReceiver()
    hook_seen_at: list[float] = []

    async def timed_hook(scope, receive, send) -> None:
        hook_seen_at.append(time.monotonic())
        await hook(scope, receive, send)

    with serving(imds) as metadata, serving(timed_hook) as receiver:
        config = llama_config(
            tiny_model,
            preemption={"provider": "aws", "aws_imds_url": metadata.url, "aws_poll_s": 0.2},
            drain={
                "reserve_s": 2,
                "hooks": [
                    {"kind": "webhook", "url": receiver.url + "/drained", "headers": {"X-Pool-Token": "t0k"}}
                ],
            },
        )
        with RunningAgent(write_config(tmp_path, config)) as agent:
            agent.wait_state("ready")
            engine_pid = agent.status()["engine"]["pid"]
            stream = StreamInThread(agent.url).start()

            imds.spot_action = spot_notice(120)
            wait_for(lambda: agent.readyz() == 503, 30, "readiness to turn off after the notice")
            assert not stream.done.is_set(), "the stream ended before the notice: make it longer"
            status = agent.status()
            assert status["state"] == "draining"
            assert status["in_flight"] == 1
            refused = agent.http.post("/v1/completions", json=completion(), headers=agent.headers())
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"

            stream.join()
            assert stream.error is None and stream.status == 200
            assert generated_tokens(stream.text) == STREAM_TOKENS  # intact, to [DONE]

            stopped = agent.wait_state("stopped", timeout=20)
            assert len(hook.calls) == 1
            call = hook.calls[0]
            assert call["event"] == "node.drained"
            assert call["source"] == "aws-spot"
            assert call["node"] == "node-test"
            assert call["inflight_left"] == 0
            assert hook.headers[0]["x-pool-token"] == "t0k"
            report = stopped["drain"]
            # The hook only once the proxy had passed on the stream's last byte.
            assert report["inflight_done_at"] <= report["hooks"][0]["at"]
            assert report["inflight_at_notice"] == 1
            assert report["inflight_left"] == 0
            assert report["hooks"] == [
                {"hook": "webhook 127.0.0.1", "ok": True, "detail": "done", "at": report["hooks"][0]["at"]}
            ]
            assert report["readiness_off_at"] <= report["inflight_done_at"] <= report["engine_stopped_at"]
            with pytest.raises(ProcessLookupError):
                os.kill(engine_pid, 0)
            assert agent.readyz() == 503
            assert agent.http.get("/livez").status_code == 200  # still answering, for the record


def test_sigterm_drains_then_exits_zero(tmp_path: Path, tiny_model: Path) -> None:
    hook = WebhookReceiver()
    with serving(hook) as receiver:
        config = llama_config(tiny_model, drain={"hooks": [{"kind": "webhook", "url": receiver.url}]})
        path = write_config(tmp_path, config)
        port = int(path.read_text().split("port = ")[-1].split()[0])
        url = f"http://127.0.0.1:{port}"
        log_path = tmp_path / "agent.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fleet_agent.main", "run", "--config", str(path)],
                stderr=log,
                stdout=log,
            )
        try:
            wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, 120, "the agent to be ready")
            engine_pid = httpx.get(url + "/status").json()["engine"]["pid"]
            stream = StreamInThread(url).start()
            process.send_signal(signal.SIGTERM)
            wait_for(lambda: httpx.get(url + "/readyz").status_code == 503, 30, "readiness off after SIGTERM")
            assert not stream.done.is_set(), "the stream ended before SIGTERM: make it longer"
            stream.join()
            assert generated_tokens(stream.text) == STREAM_TOKENS
            assert process.wait(120) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert [call["source"] for call in hook.calls] == ["signal"]
    with pytest.raises(ProcessLookupError):
        os.kill(engine_pid, 0)
    log_text = log_path.read_text()
    steps = [
        "readiness off (signal: SIGTERM)",
        "in-flight requests finished",
        "drained-hook",
        "engine stopped",
        "drain complete",
    ]
    positions = [log_text.find(step) for step in steps]
    assert -1 not in positions, log_text[-3000:]
    assert positions == sorted(positions)  # logged in the order they happened
    assert "Traceback" not in log_text


def test_webhook_hook_retries_server_errors_and_gives_up_on_refusal() -> None:
    flaky = WebhookReceiver(status=503)
    event = DrainedEvent("n1", "r", "p", "signal", "SIGTERM", time.time(), time.time() + 30, 0, time.time())

    async def run(url: str, attempts: int) -> None:
        async with httpx.AsyncClient() as client:
            hook = WebhookDrainedHook(WebhookHook(kind="webhook", url=url, attempts=attempts), client)  # type: ignore[arg-type]
            await hook.run(event, time.time() + 30)

    with serving(flaky) as receiver:
        with pytest.raises(RuntimeError, match="answered 503"):
            asyncio.run(run(receiver.url, attempts=2))
        assert len(flaky.calls) == 2  # a 5xx is worth another try
        flaky.status = 400
        with pytest.raises(RuntimeError, match="answered 400"):
            asyncio.run(run(receiver.url, attempts=3))
        assert len(flaky.calls) == 3  # a 4xx is final
        flaky.status = 204
        asyncio.run(run(receiver.url, attempts=1))
        assert flaky.calls[-1]["node"] == "n1"
