"""The Ollama adapter and the agent in attach mode, against a fake that speaks Ollama's API."""

from __future__ import annotations

import json
from pathlib import Path

from .agent_testkit.fake_gpu import FakeGpuBackend
from .agent_testkit.fake_ollama import MODEL_SIZE, FakeOllama
from .agent_testkit.harness import FAST_PROBES, RunningAgent, write_config
from .agent_testkit.net import serving

MODEL = "llama3.2:3b"


def ollama_config(port: int, **engine: object) -> dict[str, object]:
    return {
        "node": {"id": "ollama-node", "accelerator": "gpu"},
        "engine": {"kind": "ollama", "mode": "attach", "models": [MODEL], "port": port, **engine},
        "probes": FAST_PROBES,
    }


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_ready_only_after_preload_shows_in_ps(tmp_path: Path) -> None:
    ollama = FakeOllama()
    with (
        serving(ollama) as fake,
        RunningAgent(
            write_config(tmp_path, ollama_config(port_of(fake.url))), gpu_backend=FakeGpuBackend()
        ) as agent,
    ):
        status = agent.wait_state("ready")
        preload = ("POST", "/api/generate")
        assert ollama.requests.index(("GET", "/api/ps")) < ollama.requests.index(preload)
        assert status["model"]["facts"][MODEL]["size_vram"] == MODEL_SIZE
        assert status["model"]["on_gpu"] is True

        # Ollama's native streaming (NDJSON) passes through line by line.
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 5},
        }
        with agent.http.stream("POST", "/api/chat", json=body, headers=agent.headers()) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/x-ndjson"
            assert response.headers["x-fleet-gpu"] == "true"
            assert response.headers["x-fleet-model"] == MODEL
            lines = [json.loads(line) for line in response.iter_lines() if line]
        assert [line["done"] for line in lines] == [False] * 5 + [True]

        # The OpenAI-compatible side, with SSE.
        chat = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
            "stream": True,
        }
        events = agent.http.post("/v1/chat/completions", json=chat, headers=agent.headers()).text
        assert events.count("data: ") == 4 and events.rstrip().endswith("data: [DONE]")

        # Pull, delete and the like are not for clients: Ollama itself has no auth.
        for path in ("/api/pull", "/api/delete", "/api/create", "/api/copy"):
            assert agent.http.post(path, json={"model": MODEL}, headers=agent.headers()).status_code == 404
        assert ("POST", "/api/pull") not in ollama.requests


def test_model_fallen_back_to_cpu_is_not_ready(tmp_path: Path) -> None:
    ollama = FakeOllama(gpu=False)
    with (
        serving(ollama) as fake,
        RunningAgent(
            write_config(tmp_path, ollama_config(port_of(fake.url))), gpu_backend=FakeGpuBackend()
        ) as agent,
    ):
        status = agent.wait_detail("model", "not in GPU memory")
        assert status["state"] == "warming"
        assert agent.readyz() == 503
        assert f"model: not in GPU memory: {MODEL} on CPU (size_vram 0 of {MODEL_SIZE})" in status["reasons"]
        assert status["model"]["on_gpu"] is False
        assert status["checks"]["engine"]["ok"] is True  # Ollama itself is up: only the model is wrong


def test_missing_model_is_pulled_when_allowed_and_pull_errors_are_reported(tmp_path: Path) -> None:
    ollama = FakeOllama(on_disk=set(), pull_error="pull model manifest: file does not exist")
    config = ollama_config(0, pull_missing=True)
    with serving(ollama) as fake:
        config["engine"]["port"] = port_of(fake.url)  # type: ignore[index]
        with RunningAgent(write_config(tmp_path, config), gpu_backend=FakeGpuBackend()) as agent:
            failing = agent.wait_state("warming")
            for _ in range(100):
                failing = agent.status()
                if "file does not exist" in failing["checks"]["model"]["detail"]:
                    break
            assert (
                "pull of llama3.2:3b failed: pull model manifest: file does not exist"
                in (failing["checks"]["model"]["detail"])
            )
            ollama.pull_error = None  # the registry is back
            agent.wait_state("ready")
            assert MODEL in ollama.on_disk


def test_model_not_on_disk_without_pull_is_named(tmp_path: Path) -> None:
    ollama = FakeOllama(on_disk=set())
    with (
        serving(ollama) as fake,
        RunningAgent(
            write_config(tmp_path, ollama_config(port_of(fake.url))), gpu_backend=FakeGpuBackend()
        ) as agent,
    ):
        agent.wait_detail("model", "model llama3.2:3b is not on disk and engine.pull_missing is false")
        assert ("POST", "/api/pull") not in ollama.requests
