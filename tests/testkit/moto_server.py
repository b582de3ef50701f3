"""moto in server mode (`moto_server`, the moto[server] dev dependency) on a free port of 127.0.0.1, for
AWS APIs driven through the real botocore clients: the one way the tests and benches start moto.

Its own process: its request handling does not compete with the test for the interpreter, and its
backends are its own (moto's are module-level state, shared by every server in one process).
`moto_url`, one server for the session, is a fixture for both test trees (their conftest.py files load
this module as a plugin). Tests that need moto empty start their own and `reset` it (tests/controller),
never the shared one.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from node_image.agent.tests.agent_testkit.net import free_port, wait_for

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/moto-api/").status_code == 200, 120, "moto_server to answer")
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


def client(url: str, service: str, region: str = REGION) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=url, **CREDENTIALS)


def reset(url: str) -> None:
    """Every backend back to empty (moto's own API; it took over 5 s on a busy machine)."""
    httpx.post(f"{url}/moto-api/reset", timeout=120)
