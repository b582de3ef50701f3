"""Fixtures for the agent's tests: a tiny real model for llama.cpp, a real redis-server, and moto in
server mode (AWS APIs on loopback: `moto_url`, from the test kit the program's tests use too)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .agent_testkit.net import free_port, wait_for
from .agent_testkit.tiny_model import write_tiny_llama

pytest_plugins = ["testkit.moto_server"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the heartbeat tests need a real one "
            "(run scripts/setup.sh, or: apt-get install -y redis-server)"
        )
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        # Where it binds: "localhost" may resolve to ::1, or not at all.
        client = redis.Redis(host="127.0.0.1", port=port)
        wait_for(client.ping, 10, "redis-server to answer PING")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
