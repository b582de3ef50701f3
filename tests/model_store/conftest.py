"""Real parts for the model store's tests: moto in server mode as the S3 API (one per session), and
volumes on their own redis-server (node_image/agent/tests/agent_testkit/juicefs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node_image.agent.tests.agent_testkit.net import free_port


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
