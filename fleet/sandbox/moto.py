"""moto in server mode (`moto_server`, moto[server]) on a free port of 127.0.0.1: the AWS APIs the
sandbox's fleet is driven through with the real botocore clients (Auto Scaling, EC2, SSM, S3, Secrets
Manager, SNS), every region at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx

from fleet.sandbox.net import free_port, wait_for

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def start_moto(port: int | None = None, log: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`moto_server` on 127.0.0.1; its process and URL once it answers."""
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = port or free_port()
    sink = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=sink, stderr=subprocess.STDOUT
        )
    finally:
        if not isinstance(sink, int):
            sink.close()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/moto-api/").status_code == 200, 120, "moto_server to answer")
    return process, url


def client(url: str, service: str, region: str = REGION) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=url, **CREDENTIALS)
