"""The agent against the real llama.cpp engine: spawn, readiness, the proxy with streaming,
receipts and auth, and the faults: crash (SIGKILL), wedge (SIGSTOP), and a condemned GPU."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet_agent.state import State

from .agent_testkit.fake_gpu import FakeGpuBackend
from .agent_testkit.harness import RunningAgent, completion, generated_tokens, llama_config, write_config
from .agent_testkit.net import wait_for


@pytest.fixture
def agent(tmp_path: Path, tiny_model: Path) -> Iterator[RunningAgent]:
    with RunningAgent(write_config(tmp_path, llama_config(tiny_model))) as running:
        running.wait_state("ready")
        yield running


def test_becomes_ready_and_proxies_with_receipts(agent: RunningAgent) -> None:
    status = agent.status()
    assert status["ready"] is True
    assert {name: check["ok"] for name, check in status["checks"].items()} == {
        "engine": True,
        "model": True,
        "canary": True,
        "progress": True,
    }
    assert agent.http.get("/startupz").status_code == 200
    assert agent.http.get("/livez").status_code == 200

    response = agent.http.post(
        "/v1/completions", json=completion(max_tokens=5), headers=agent.headers(**{"X-Request-Id": "req-42"})
    )
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 5
    assert response.headers["x-request-id"] == "req-42"
    assert response.headers["x-fleet-node"] == "node-test"
    assert response.headers["x-fleet-engine"] == "llamacpp"
    assert response.headers["x-fleet-model"] == "tiny"
    assert response.headers["x-fleet-gpu"] == "false"  # a CPU node says so

    generated = agent.http.post("/v1/completions", json=completion(), headers=agent.headers())
    assert len(generated.headers["x-request-id"]) == 32  # one is made when the client sends none

    metrics = agent.http.get("/metrics").text
    assert 'fleet_agent_requests_total{route="/v1/completions",code="200"} 2' in metrics
    assert 'fleet_agent_request_duration_seconds_count{route="/v1/completions",code="200"} 2' in metrics
    assert 'fleet_agent_state{state="ready"} 1' in metrics
    assert "fleet_agent_ready 1" in metrics
    assert "llamacpp:tokens_predicted_total" in agent.http.get("/metrics/engine").text


def test_streams_chunks_as_they_come(agent: RunningAgent) -> None:
    body = completion(max_tokens=200, stream=True)
    chunks: list[bytes] = []
    with agent.http.stream("POST", "/v1/completions", json=body, headers=agent.headers()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks.extend(response.iter_raw())
    assert generated_tokens(b"".join(chunks).decode("utf-8", "replace")) == 200
    assert len(chunks) > 10  # passed on as they came, not buffered into one body


def test_api_key_is_required(agent: RunningAgent) -> None:
    missing = agent.http.post("/v1/completions", json=completion())
    wrong = agent.http.post("/v1/completions", json=completion(), headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert agent.http.get("/v1/models", headers={"X-Api-Key": "test-key-0123456789"}).status_code == 200
    # Ollama's native API is not llama.cpp's: not proxied.
    assert agent.http.post("/api/generate", json={}, headers=agent.headers()).status_code == 404
    assert 'fleet_agent_requests_rejected_total{reason="unauthorized"} 2' in agent.http.get("/metrics").text


def test_engine_killed_is_not_ready_then_restarted(tmp_path: Path, tiny_model: Path) -> None:
    # The restart waits 3 s, not 0.2 s: time to be refused by the degraded agent even on a busy machine.
    config = llama_config(tiny_model, supervisor={"backoff_initial_s": 3.0})
    with RunningAgent(write_config(tmp_path, config)) as agent:
        agent.wait_state("ready")
        old_pid = agent.status()["engine"]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: agent.readyz() == 503, 30, "readiness to drop after the engine was killed")
        assert (
            agent.http.post("/v1/completions", json=completion(), headers=agent.headers()).status_code == 503
        )
        # Why it left ready, as the agent recorded it (its engine check changes again at the restart).
        assert agent.agent is not None
        (degraded,) = [t for t in agent.agent.state.history if t.new is State.DEGRADED]
        assert any("killed by SIGKILL" in reason for reason in degraded.reasons)

        ready = agent.wait_state("ready", timeout=60)
        assert ready["engine"]["pid"] != old_pid
        assert ready["engine"]["restarts"] == 1
        assert (
            agent.http.post("/v1/completions", json=completion(), headers=agent.headers()).status_code == 200
        )


def test_engine_wedged_is_degraded_then_restarted(agent: RunningAgent) -> None:
    old_pid = agent.status()["engine"]["pid"]
    os.kill(old_pid, signal.SIGSTOP)
    try:
        degraded = agent.wait_state("degraded", timeout=15)
        assert any("not responding" in reason for reason in degraded["reasons"])
        ready = agent.wait_state("ready", timeout=40)
        assert ready["engine"]["pid"] != old_pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, signal.SIGCONT)  # should it still exist, let it see its SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert 'fleet_agent_engine_restarts_total{cause="unresponsive"} 1' in agent.http.get("/metrics").text


def test_model_on_the_gpu_is_read_from_nvml_then_xid_79_condemns_the_gpu(
    tmp_path: Path, tiny_model: Path
) -> None:
    gpu = FakeGpuBackend()
    config = llama_config(tiny_model, node={"accelerator": "gpu"})
    with RunningAgent(write_config(tmp_path, config), gpu_backend=gpu) as agent:
        # llama.cpp runs here on the CPU, whatever -ngl says: NVML lists no process of it, so never ready.
        warming = agent.wait_detail("model", "hold memory on 0 GPU(s) of the 1")
        assert warming["state"] == "warming" and agent.readyz() == 503
        # Its process holds memory, but less than half its weights: a CUDA context, not the model.
        weights = tiny_model.stat().st_size
        gpu.hold(warming["engine"]["pid"], weights // 4)
        agent.wait_detail("model", "under 50% of the weights'")
        assert agent.readyz() == 503

        gpu.hold(warming["engine"]["pid"], weights + 300 * 2**20)  # weights, KV cache, buffers
        ready = agent.wait_state("ready")
        assert ready["model"]["on_gpu"] is True
        residency = ready["model"]["facts"]["gpu_residency"]
        assert residency["checked"] == "engine processes" and residency["gpus_holding"] == [0]
        gpu.replay_xid(13)  # an application's fault: the GPU stays in service
        wait_for(lambda: agent.status()["gpu"]["xid_events"], 30, "XID 13 to be seen")
        assert agent.readyz() == 200

        gpu.replay_xid(79)
        wait_for(lambda: agent.readyz() == 503, 30, "readiness to drop after XID 79")
        status = agent.status()
        assert status["state"] == "degraded"
        assert any("XID 79 (GPU has fallen off the bus)" in reason for reason in status["reasons"])
        # Condemned for good: the GPU's readings still look fine, the node stays out of rotation.
        assert agent.wait_state("degraded", timeout=30)["gpu"]["healthy"] is False
        assert 'fleet_agent_gpu_xid_events_total{gpu="0",xid="79"} 1' in agent.http.get("/metrics").text


def test_gpu_node_without_a_gpu_is_never_ready(tmp_path: Path, tiny_model: Path) -> None:
    gpu = FakeGpuBackend(unavailable="NVML Shared Library Not Found")
    config = llama_config(tiny_model, node={"accelerator": "gpu"})
    with RunningAgent(write_config(tmp_path, config), gpu_backend=gpu) as agent:
        status = agent.wait_detail("model", "GPU processes unreadable (NVML)")
        assert status["checks"]["engine"]["ok"] is True  # the engine serves, on no GPU
        assert status["state"] == "warming"
        assert status["checks"]["gpu"]["detail"] == "NVML unavailable: NVML Shared Library Not Found"
        assert agent.readyz() == 503
        assert (
            agent.http.post("/v1/completions", json=completion(), headers=agent.headers()).status_code == 503
        )
        assert httpx.get(agent.url + "/startupz").status_code == 503


def engine_tokens(agent: RunningAgent) -> float:
    for line in agent.http.get("/metrics/engine").text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total "):
            return float(line.split()[1])
    raise AssertionError("llama.cpp reports no tokens_predicted_total")


def test_client_that_goes_away_stops_the_engines_work(agent: RunningAgent) -> None:
    asked = 4000
    before = engine_tokens(agent)
    with (
        httpx.Client(base_url=agent.url, timeout=30) as client,
        client.stream(
            "POST", "/v1/completions", json=completion(max_tokens=asked, stream=True), headers=agent.headers()
        ) as response,
    ):
        next(response.iter_raw())  # generation has begun; now hang up
    wait_for(lambda: agent.status()["in_flight"] == 0, 30, "the proxy to let the request go")
    wait_for(
        lambda: "llamacpp:requests_processing 0" in agent.http.get("/metrics/engine").text,
        30,
        "llama.cpp to stop the abandoned generation",
    )
    generated = engine_tokens(agent) - before
    assert generated < asked / 2, f"the engine generated {generated:.0f} of {asked} tokens for nobody"
    assert agent.readyz() == 200
