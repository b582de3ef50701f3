"""A tiny real GGUF model for llama.cpp, written once per session (the agent's tests write theirs the same way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")
