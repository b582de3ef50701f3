"""moto in server mode (`moto_server`, the moto[server] dev dependency) on a free port of 127.0.0.1, for
AWS APIs driven through the real botocore clients."""

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
        wait_for(lambda: httpx.get(f"{url}/moto-api/").status_code == 200, 30, "moto_server to answer")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def client(url: str, service: str, region: str = REGION) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=url, **CREDENTIALS)


def reset(url: str) -> None:
    """Every backend back to empty (moto's own API)."""
    httpx.post(f"{url}/moto-api/reset")
