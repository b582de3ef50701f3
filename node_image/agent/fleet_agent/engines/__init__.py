"""Engine adapters, one per engine kind."""

from __future__ import annotations

from fleet_agent.config import EngineConfig
from fleet_agent.engines.base import EngineAdapter
from fleet_agent.engines.llamacpp import LlamaCppAdapter
from fleet_agent.engines.ollama import OllamaAdapter
from fleet_agent.engines.vllm import VllmAdapter

ADAPTERS: dict[str, type[EngineAdapter]] = {
    "vllm": VllmAdapter,
    "ollama": OllamaAdapter,
    "llamacpp": LlamaCppAdapter,
}


def make_adapter(config: EngineConfig, *, gpu_required: bool) -> EngineAdapter:
    return ADAPTERS[config.kind](config, gpu_required=gpu_required)
