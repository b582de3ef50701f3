"""vLLM in spawn mode (a fake `vllm serve` process speaking vLLM's paths and metrics), the engine
adapters' command lines and health readings, and the supervisor's backoff and crash loop."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
from pathlib import Path

import httpx
import pytest

from fleet_agent.config import EngineConfig
from fleet_agent.engines import make_adapter
from fleet_agent.engines.base import EngineHealth

from .agent_testkit.asgi import respond
from .agent_testkit.harness import FAKE_VLLM, FAST_PROBES, FAST_SUPERVISOR, RunningAgent, write_config
from .agent_testkit.net import free_port, serving, wait_for

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def vllm_config(**engine: object) -> dict[str, object]:
    return {
        "node": {"id": "vllm-node", "accelerator": "cpu"},
        "engine": {"kind": "vllm", "models": [MODEL], "port": free_port(), "executable": FAKE_VLLM, **engine},
        "probes": FAST_PROBES,
        "supervisor": FAST_SUPERVISOR,
    }


def test_command_lines_bind_loopback_and_name_the_model() -> None:
    vllm = make_adapter(
        EngineConfig(kind="vllm", models=[MODEL], args=["--max-model-len", "8192"]), gpu_required=True
    )
    assert vllm.command() == [
        "vllm",
        "serve",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--served-model-name",
        MODEL,
        "--max-model-len",
        "8192",
    ]
    llama = EngineConfig(kind="llamacpp", models=["q"], model_path=Path("/models/q.gguf"), parallel=2)
    assert make_adapter(llama, gpu_required=False).command() == [
        "llama-server",
        "--model",
        "/models/q.gguf",
        "--alias",
        "q",
        "--host",
        "127.0.0.1",
        "--port",
        "8081",
        "--parallel",
        "2",
        "--n-gpu-layers",
        "0",
        "--metrics",
    ]
    assert "999" in make_adapter(llama, gpu_required=True).command()  # all layers on the GPU
    ollama = make_adapter(
        EngineConfig(kind="ollama", models=["a", "b"], env={"OLLAMA_MODELS": "/m"}), gpu_required=True
    )
    assert ollama.command() == ["ollama", "serve"]
    assert ollama.environment() == {
        "OLLAMA_HOST": "127.0.0.1:11434",
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_NUM_PARALLEL": "4",
        "OLLAMA_MAX_LOADED_MODELS": "2",
        "OLLAMA_MODELS": "/m",
    }


def test_health_readings_follow_each_engines_protocol() -> None:
    answer = {"status": 200}
    release = threading.Event()

    async def engine(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if answer["status"] == 0:  # accept, then never answer
            await asyncio.to_thread(release.wait, 60)
        await respond(send, answer["status"] or 200, b"")

    def reading(kind: str, port: int, timeout: float = 30) -> EngineHealth:
        """The probe's reading; a timeout generous enough for any answer on a busy machine, except where
        no answer is the point."""
        fields = {"kind": kind, "models": ["m"], "port": port, "model_path": "/m.gguf"}
        config = EngineConfig.model_validate(fields)
        adapter = make_adapter(config, gpu_required=False)

        async def probe() -> EngineHealth:
            async with httpx.AsyncClient() as client:
                return (await adapter.health(client, timeout=timeout)).status

        return asyncio.run(probe())

    assert reading("vllm", free_port()) is EngineHealth.STARTING  # connection refused: still loading
    with serving(engine) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert reading("vllm", port) is EngineHealth.UP
        answer["status"] = 503
        assert reading("vllm", port) is EngineHealth.DEAD  # vLLM: the engine core died
        assert reading("llamacpp", port) is EngineHealth.STARTING  # llama.cpp: still loading the model
        answer["status"] = 0
        assert reading("vllm", port, timeout=0.3) is EngineHealth.UNRESPONSIVE
        release.set()


def test_vllm_starts_then_engine_death_restarts_it(tmp_path: Path) -> None:
    with RunningAgent(write_config(tmp_path, vllm_config())) as agent:
        status = agent.wait_state("ready")
        assert status["checks"]["model"]["detail"] == f"{MODEL} served"
        old_pid = status["engine"]["pid"]
        response = agent.http.post(
            "/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 3}, headers=agent.headers()
        )
        assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 3

        httpx.post(status["engine"]["url"] + "/fake/engine-dead")
        wait_for(lambda: agent.readyz() == 503, 30, "readiness off once /health says 503")
        ready = agent.wait_state("ready", timeout=30)
        assert ready["engine"]["pid"] != old_pid
        assert 'fleet_agent_engine_restarts_total{cause="dead"} 1' in agent.http.get("/metrics").text


def test_requests_waiting_without_tokens_is_wedged_then_restarted(tmp_path: Path) -> None:
    with RunningAgent(write_config(tmp_path, vllm_config())) as agent:
        status = agent.wait_state("ready")
        old_pid = status["engine"]["pid"]
        httpx.post(status["engine"]["url"] + "/fake/stall")  # /health stays 200: only progress can tell
        outcome: dict[str, int] = {}

        def stuck_request() -> None:
            body = {"model": MODEL, "prompt": "hi", "max_tokens": 3}
            outcome["status"] = agent.http.post(
                "/v1/completions", json=body, headers=agent.headers()
            ).status_code

        waiter = threading.Thread(target=stuck_request, daemon=True)
        waiter.start()
        degraded = agent.wait_state("degraded", timeout=15)
        # The client's request and the canary both wait; the engine's metrics say so.
        assert any(
            re.match(r"progress: wedged: [12] request\(s\) waiting", reason) for reason in degraded["reasons"]
        )
        assert degraded["engine"]["load"]["waiting"] >= 1.0
        ready = agent.wait_state("ready", timeout=30)
        assert ready["engine"]["pid"] != old_pid
        waiter.join(10)
        assert outcome["status"] == 502  # the wedged engine's request could only be cut; the client is told
        assert 'fleet_agent_engine_restarts_total{cause="wedged"} 1' in agent.http.get("/metrics").text


def test_crash_loop_is_reported_and_backs_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = vllm_config(executable=[sys.executable, "-c", "import sys; sys.exit(3)"])
    caplog.set_level(logging.ERROR, logger="fleet_agent")
    with RunningAgent(write_config(tmp_path, config)) as agent:
        capped = agent.wait_detail("engine", "restart in 2.0 s", timeout=60)  # doubled up to the cap
        assert capped["state"] == "starting"
        assert capped["engine"]["crash_loop"] is True
        assert "exited with code 3" in capped["checks"]["engine"]["detail"]
        assert agent.readyz() == 503
    # The engine check says each exit for less than a second, as the log does (the same words): read the
    # first ones from the log, not by catching them in /status.
    exits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("engine exited")]
    assert exits[:4] == [
        "engine exited with code 3; restart in 0.2 s",
        "engine exited with code 3; restart in 0.4 s",
        "engine exited with code 3; crash loop: 3 exits in 300 s; restart in 0.8 s",
        "engine exited with code 3; crash loop: 4 exits in 300 s; restart in 1.6 s",
    ]
