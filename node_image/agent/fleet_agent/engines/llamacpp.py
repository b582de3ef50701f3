"""llama.cpp: `llama-server`. /health answers 503 while the model loads, 200 once it serves."""

from __future__ import annotations

import httpx

from fleet_agent.engines.base import EngineAdapter, EngineHealth, HealthReading


class LlamaCppAdapter(EngineAdapter):
    kind = "llamacpp"
    health_path = "/health"
    metrics_path = "/metrics"
    # Running, waiting ("deferred": no free slot), tokens generated.
    load_metrics = (
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        "llamacpp:tokens_predicted_total",
    )

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
        # No layer offloaded is a CPU engine whatever NVML shows; otherwise NVML decides.
        return False if self.gpu_required and self.config.gpu_layers == 0 else None
