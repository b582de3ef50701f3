"""What every engine adapter provides. An adapter holds only what differs between engines:
command line, environment, health and model-loaded checks, preload, canary and metrics parsing."""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from fleet_agent import constants as c
from fleet_agent.config import EngineConfig


class EngineHealth(enum.Enum):
    UP = "up"
    STARTING = "starting"  # not listening yet, or loading weights
    DEAD = "dead"  # answering, but says its engine has died: restart it
    UNRESPONSIVE = "unresponsive"  # accepted the connection, never answered


@dataclass(frozen=True)
class HealthReading:
    status: EngineHealth
    detail: str


@dataclass(frozen=True)
class ModelReading:
    loaded: bool
    detail: str
    # Whether the loaded model sits wholly in GPU memory; None when the engine does not say.
    on_gpu: bool | None = None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineLoad:
    """From the engine's own metrics; None where the engine has no such figure."""

    running: float | None = None
    waiting: float | None = None
    generated_tokens: float | None = None
    kv_cache_usage: float | None = None  # share of the KV cache in use, 0 to 1

    @property
    def pending(self) -> float | None:
        if self.running is None and self.waiting is None:
            return None
        return (self.running or 0.0) + (self.waiting or 0.0)


class EngineError(Exception):
    """An engine call failed in a way worth one line in the logs and the status."""


class EngineAdapter(ABC):
    kind: ClassVar[str]
    health_path: ClassVar[str]
    metrics_path: ClassVar[str | None] = None
    # The engine's metric names for requests running, requests waiting, tokens generated.
    load_metrics: ClassVar[tuple[str, str, str] | None] = None
    # The engine's metric for the share of its KV cache in use (0 to 1), where it has one.
    kv_cache_metric: ClassVar[str | None] = None
    canary_path: ClassVar[str] = "/v1/completions"
    # Whether the model's place is judged from NVML (the engine's processes holding GPU memory) rather than
    # from the engine's own report (Ollama's /api/ps says how much of the model sits in VRAM).
    gpu_residency_from_nvml: ClassVar[bool] = True

    def __init__(self, config: EngineConfig, *, gpu_required: bool) -> None:
        self.config = config
        self.gpu_required = gpu_required
        self.base_url = config.base_url

    @property
    def primary_model(self) -> str:
        return self.config.models[0]

    # --- process -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        executable = self.config.executable or self.default_executable()
        return [*executable, *self.engine_arguments(), *self.config.args]

    @abstractmethod
    def default_executable(self) -> list[str]: ...

    @abstractmethod
    def engine_arguments(self) -> list[str]:
        """Arguments that bind the engine to 127.0.0.1 on its port and name the model."""

    def environment(self) -> dict[str, str]:
        """Variables added to the agent's own environment for the engine process."""
        return dict(self.config.env)

    # --- probes --------------------------------------------------------------------------------
    async def health(self, client: httpx.AsyncClient, timeout: float) -> HealthReading:
        try:
            response = await client.get(self.base_url + self.health_path, timeout=timeout)
        except httpx.ConnectError:
            return HealthReading(EngineHealth.STARTING, "not listening yet (connection refused)")
        except httpx.TimeoutException:
            return HealthReading(EngineHealth.UNRESPONSIVE, f"no answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return HealthReading(EngineHealth.UNRESPONSIVE, f"health request failed: {exc!r}")
        return self.read_health(response)

    def read_health(self, response: httpx.Response) -> HealthReading:
        if response.status_code == 200:
            return HealthReading(EngineHealth.UP, "healthy")
        return HealthReading(EngineHealth.DEAD, f"{self.health_path} answered {response.status_code}")

    async def model_status(self, client: httpx.AsyncClient, timeout: float) -> ModelReading:
        """OpenAI-style engines list what they serve at /v1/models once the weights are loaded."""
        response = await client.get(self.base_url + "/v1/models", timeout=timeout)
        if response.status_code != 200:
            return ModelReading(False, f"/v1/models answered {response.status_code}")
        served = [entry.get("id") for entry in response.json().get("data", [])]
        if self.primary_model not in served:
            return ModelReading(False, f"{self.primary_model} not among served models {served}")
        return ModelReading(True, f"{self.primary_model} served", self.loaded_on_gpu(), {"served": served})

    def loaded_on_gpu(self) -> bool | None:
        """What the engine's settings alone say; None when only a reading can tell."""
        return None

    def weights_path(self) -> Path | None:
        """The model's weights on disk (a GGUF file, a model directory), where the config names them."""
        return self.config.model_path

    async def preload(self, client: httpx.AsyncClient, timeout: float) -> None:  # noqa: B027
        """Bring the models into memory; engines that load at start need nothing here."""

    def canary_request(self) -> dict[str, Any]:
        return {"model": self.primary_model, "prompt": c.CANARY_PROMPT, "max_tokens": 1, "temperature": 0}

    def canary_problem(self, response: httpx.Response) -> str | None:
        """None when the canary produced a token, else what went wrong."""
        if response.status_code != 200:
            return f"canary answered {response.status_code}: {response.text[:200]}"
        try:
            body = response.json()
            choices = body["choices"]
        except (ValueError, KeyError, TypeError):
            return "canary answer is not an OpenAI completion"
        tokens = (body.get("usage") or {}).get("completion_tokens")
        if not choices or (tokens is not None and tokens < 1):
            return "canary produced no token"
        return None

    def read_load(self, metrics_text: str) -> EngineLoad:
        if self.load_metrics is None:
            return EngineLoad()
        running, waiting, generated = self.load_metrics
        kv = self.kv_cache_metric
        sums = metric_sums(metrics_text, {*self.load_metrics, *([kv] if kv else [])})
        kv_usage = sums.get(kv) if kv else None
        return EngineLoad(sums.get(running), sums.get(waiting), sums.get(generated), kv_usage)

    def serves_on_gpu(self, reading: ModelReading | None) -> bool:
        """Whether a request answered now runs on the GPU (the X-Fleet-GPU receipt)."""
        if not self.gpu_required:
            return False
        return reading is None or reading.on_gpu is not False

    def proxies(self, path: str) -> bool:
        """The client-facing paths forwarded to this engine."""
        return path.startswith("/v1/")


def metric_sums(text: str, names: set[str]) -> dict[str, float]:
    """Sum the samples of each named metric across its label sets (Prometheus text format)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace != -1:
            name, rest = line[:brace], line[line.rfind("}") + 1 :]
        else:
            name, _, rest = line.partition(" ")
        if name not in names:
            continue
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        if not math.isnan(value):
            sums[name] = sums.get(name, 0.0) + value
    return sums
