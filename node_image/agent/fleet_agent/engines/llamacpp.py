"""llama.cpp: `llama-server`. /health answers 503 while the model loads, 200 once it serves."""

from __future__ import annotations

import httpx
from fleet_agent.engines.base import EngineAdapter, EngineHealth, EngineLoad, HealthReading, metric_sums

RUNNING = "llamacpp:requests_processing"
WAITING = "llamacpp:requests_deferred"
GENERATED = "llamacpp:tokens_predicted_total"


class LlamaCppAdapter(EngineAdapter):
    kind = "llamacpp"
    health_path = "/health"
    metrics_path = "/metrics"

    def default_executable(self) -> list[str]:
        return ["llama-server"]

    def engine_arguments(self) -> list[str]:
        gpu_layers = self.config.gpu_layers if self.gpu_required else 0
        return [
            "--model",
            str(self.config.model_path),
            "--alias",
            self.primary_model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.config.bind_port),
            "--parallel",
            str(self.config.parallel),
            "--n-gpu-layers",
            str(gpu_layers),
            "--metrics",
        ]

    def read_health(self, response: httpx.Response) -> HealthReading:
        if response.status_code == 503:
            return HealthReading(EngineHealth.STARTING, "loading model")
        return super().read_health(response)

    def loaded_on_gpu(self) -> bool | None:
        return self.gpu_required and self.config.gpu_layers > 0

    def read_load(self, metrics_text: str) -> EngineLoad:
        sums = metric_sums(metrics_text, {RUNNING, WAITING, GENERATED})
        return EngineLoad(sums.get(RUNNING), sums.get(WAITING), sums.get(GENERATED))
