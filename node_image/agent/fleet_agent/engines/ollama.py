"""Ollama: `ollama serve`, often a host systemd unit (attach mode).

Ollama answers `GET /` as soon as HTTP is up, long before a model is in memory, so ready needs the
model in /api/ps after a preload. /api/ps also tells how much of it sits in VRAM: a model that
silently fell back to CPU has size_vram 0 and is reported as such.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from fleet_agent import constants as c
from fleet_agent.engines.base import EngineAdapter, EngineError, ModelReading

# Inference and read-only paths. Pull, push, create, copy and delete stay unreachable from outside:
# Ollama has no auth of its own and the image's models are not the clients' to change.
PROXIED_API_PATHS = frozenset(
    {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/tags", "/api/show", "/api/ps"}
    | {"/api/version"}
)
KEEP_LOADED = -1  # keep_alive: never unload; every request resets it, so the canary sends it too


def full_name(model: str) -> str:
    """Ollama lists `llama3` as `llama3:latest`."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


class OllamaAdapter(EngineAdapter):
    kind = "ollama"
    health_path = "/"
    canary_path = "/api/generate"
    gpu_residency_from_nvml = False  # /api/ps says how much of the model is in VRAM

    def default_executable(self) -> list[str]:
        return ["ollama", "serve"]

    def engine_arguments(self) -> list[str]:
        return []  # Ollama takes its settings from the environment

    def environment(self) -> dict[str, str]:
        return {
            "OLLAMA_HOST": f"127.0.0.1:{self.config.bind_port}",
            "OLLAMA_KEEP_ALIVE": str(KEEP_LOADED),
            "OLLAMA_NUM_PARALLEL": str(self.config.parallel),
            "OLLAMA_MAX_LOADED_MODELS": str(len(self.config.models)),
            **self.config.env,
        }

    async def model_status(self, client: httpx.AsyncClient, timeout: float) -> ModelReading:
        response = await client.get(self.base_url + "/api/ps", timeout=timeout)
        if response.status_code != 200:
            return ModelReading(False, f"/api/ps answered {response.status_code}")
        loaded = {full_name(entry.get("name", "")): entry for entry in response.json().get("models") or []}
        missing = [model for model in self.config.models if full_name(model) not in loaded]
        if missing:
            return ModelReading(False, f"not loaded: {', '.join(missing)}")
        facts: dict[str, Any] = {}
        partial: list[str] = []
        for model in self.config.models:
            entry = loaded[full_name(model)]
            size, size_vram = int(entry.get("size", 0)), int(entry.get("size_vram", 0))
            facts[model] = {"size": size, "size_vram": size_vram, "expires_at": entry.get("expires_at")}
            if size_vram < size:
                where = "on CPU" if size_vram == 0 else "partly on CPU"
                partial.append(f"{model} {where} (size_vram {size_vram} of {size})")
        if partial:
            return ModelReading(True, "; ".join(partial), on_gpu=False, facts=facts)
        return ModelReading(True, "loaded in GPU memory", on_gpu=True, facts=facts)

    async def preload(self, client: httpx.AsyncClient, timeout: float) -> None:
        tags = await client.get(self.base_url + "/api/tags", timeout=timeout)
        tags.raise_for_status()
        on_disk = {full_name(entry.get("name", "")) for entry in tags.json().get("models") or []}
        for model in self.config.models:
            if full_name(model) not in on_disk:
                if not self.config.pull_missing:
                    raise EngineError(f"model {model} is not on disk and engine.pull_missing is false")
                await self._pull(client, model, timeout)
            # A generate without a prompt only loads the model.
            response = await client.post(
                self.base_url + "/api/generate",
                json={"model": model, "keep_alive": KEEP_LOADED},
                timeout=timeout,
            )
            if response.status_code != 200:
                raise EngineError(
                    f"preload of {model} answered {response.status_code}: {_error_text(response)}"
                )

    async def _pull(self, client: httpx.AsyncClient, model: str, timeout: float) -> None:
        url = self.base_url + "/api/pull"
        async with client.stream("POST", url, json={"model": model}, timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                raise EngineError(f"pull of {model} answered {response.status_code}: {_error_text(response)}")
            last: dict[str, Any] = {}
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                last = json.loads(line)
                # Errors arrive mid-stream as a line of their own, under HTTP 200.
                if "error" in last:
                    raise EngineError(f"pull of {model} failed: {last['error']}")
            if last.get("status") != "success":
                raise EngineError(
                    f"pull of {model} ended without success (last status {last.get('status')!r})"
                )

    def canary_request(self) -> dict[str, Any]:
        return {
            "model": self.primary_model,
            "prompt": c.CANARY_PROMPT,
            "stream": False,
            "keep_alive": KEEP_LOADED,
            "options": {"num_predict": 1, "temperature": 0},
        }

    def canary_problem(self, response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return f"canary answered {response.status_code}: {_error_text(response)}"
        try:
            body = response.json()
        except ValueError:
            return "canary answer is not JSON"
        if not body.get("done") or body.get("eval_count", 1) < 1:
            return "canary produced no token"
        return None

    def proxies(self, path: str) -> bool:
        return path.startswith("/v1/") or path in PROXIED_API_PATHS


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:200]
    except ValueError:
        return response.text[:200]
