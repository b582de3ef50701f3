"""The controller's world: moto in server mode and llama.cpp once per module, a fresh Redis per test."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.moto_server import reset, running_moto
from testkit.redis_server import RedisServer, running_redis

from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama

from .world import redis_with_fleet_users, start_engine


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with running_moto() as url:
        yield url


@pytest.fixture
def moto(moto_url: str) -> str:
    reset(moto_url)
    return moto_url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with (
        tempfile.TemporaryDirectory(prefix="fleet-redis-") as directory,
        running_redis(Path(directory)) as server,
    ):
        yield redis_with_fleet_users(server)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture(scope="module")
def engine_port(tiny_model: Path) -> Iterator[int]:
    process, port = start_engine(tiny_model)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)
