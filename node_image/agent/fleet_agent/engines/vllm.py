"""vLLM: `vllm serve`. Connection refused means still starting; /health 503 means the engine died.

On a GPU node the model's place is judged from NVML (the engine's process tree holding GPU memory: vLLM's
EngineCore and its workers are child processes) and from vLLM's own report: `vllm:cache_config_info`
carries `num_gpu_blocks`, the KV-cache blocks it allocated in GPU memory, as a label (0: none)."""

from __future__ import annotations

import re

import httpx

from fleet_agent.engines.base import EngineAdapter, ModelReading

CACHE_CONFIG_METRIC = "vllm:cache_config_info"
_GPU_BLOCKS = re.compile(r'num_gpu_blocks="(\d+)"')


def gpu_blocks(metrics_text: str) -> int | None:
    """The GPU KV-cache blocks vLLM reports (summed over its engines); None when it reports none yet."""
    counts = [
        int(match.group(1))
        for line in metrics_text.splitlines()
        if line.startswith(CACHE_CONFIG_METRIC + "{") and (match := _GPU_BLOCKS.search(line))
    ]
    return sum(counts) if counts else None


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

    async def model_status(self, client: httpx.AsyncClient, timeout: float) -> ModelReading:
        reading = await super().model_status(client, timeout)
        if not reading.loaded or not self.gpu_required:
            return reading
        response = await client.get(f"{self.base_url}{self.metrics_path}", timeout=timeout)
        blocks = gpu_blocks(response.text) if response.status_code == 200 else None
        facts = {**reading.facts, "num_gpu_blocks": blocks}
        if blocks == 0:
            return ModelReading(True, "vLLM reports 0 GPU KV-cache blocks", False, facts)
        return ModelReading(True, reading.detail, reading.on_gpu, facts)
