"""moto in server mode (`moto_server`, the moto[server] dev dependency) on a free port of 127.0.0.1, for
AWS APIs driven through the real botocore clients: the one way the tests and benches start moto, as the
sandbox starts it (`fleet.sandbox.moto`).

Its own process: its request handling does not compete with the test for the interpreter, and its
backends are its own (moto's are module-level state, shared by every server in one process).
`moto_url`, one server for the session, is a fixture for both test trees (their conftest.py files load
this module as a plugin). Tests that need moto empty start their own and `reset` it (tests/controller),
never the shared one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from fleet.sandbox.moto import CREDENTIALS, REGION, client, start_moto

__all__ = ["CREDENTIALS", "REGION", "client", "reset", "running_moto"]


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    process, url = start_moto()
    try:
        yield url
    finally:
        # SIGKILL: moto keeps nothing worth a clean exit, and its clean exit (tearing its backends down,
        # 0.7 s on an idle machine) outlasted a 10 s wait on a busy one, failing the last test's teardown.
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with running_moto() as url:
        yield url


def reset(url: str) -> None:
    """Every backend back to empty (moto's own API; it took over 5 s on a busy machine)."""
    httpx.post(f"{url}/moto-api/reset", timeout=120)
