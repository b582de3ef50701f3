"""moto in server mode (`moto_server`, the moto[server] dev dependency) on a free port of 127.0.0.1, for
AWS APIs driven through the real botocore clients: started as the sandbox starts it (`fleet.sandbox.moto`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from fleet.sandbox.moto import CREDENTIALS, REGION, client, start_moto

__all__ = ["CREDENTIALS", "REGION", "client", "reset", "running_moto"]


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    process, url = start_moto()
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


def reset(url: str) -> None:
    """Every backend back to empty (moto's own API)."""
    httpx.post(f"{url}/moto-api/reset")
