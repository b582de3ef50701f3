"""vLLM: `vllm serve`. Connection refused means still starting; /health 503 means the engine died."""

from __future__ import annotations

from fleet_agent.engines.base import EngineAdapter


class VllmAdapter(EngineAdapter):
    kind = "vllm"
    health_path = "/health"
    metrics_path = "/metrics"
    load_metrics = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:generation_tokens_total")
    kv_cache_metric = "vllm:kv_cache_usage_perc"  # a share (1 is full), despite its name

    def default_executable(self) -> list[str]:
        return ["vllm", "serve"]

    def engine_arguments(self) -> list[str]:
        port = str(self.config.bind_port)
        model = self.primary_model
        # Weights from a path (the model store's mount) when given, served under the model's name.
        source = str(self.config.model_path) if self.config.model_path is not None else model
        return [source, "--host", "127.0.0.1", "--port", port, "--served-model-name", model]

    def environment(self) -> dict[str, str]:
        return {"VLLM_NO_USAGE_STATS": "1", **self.config.env}

    def loaded_on_gpu(self) -> bool | None:
        return self.gpu_required  # vLLM has no CPU fallback on a GPU node
