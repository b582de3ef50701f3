"""The EC2 instance metadata service, version 2 only: a session token from PUT /latest/api/token, then
GETs carrying it. Shared by the preemption watch and the AWS drained-hook (the node's identity)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from fleet_agent import constants as c

TOKEN_PATH = "/latest/api/token"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
REGION_PATH = "/latest/meta-data/placement/region"


@dataclass(frozen=True)
class InstanceIdentity:
    instance_id: str
    region: str


class ImdsSession:
    """IMDSv2 requests with a cached session token, renewed when it expires or is refused (401)."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base = base_url.rstrip("/")
        self.client = client
        self._token: str | None = None
        self._token_expires = 0.0

    def forget_token(self) -> None:
        self._token = None

    async def get(self, path: str) -> httpx.Response | None:
        """The document at `path`, or None on 404 (nothing there: no notice, not in an ASG)."""
        for _ in range(2):
            token = await self._session_token()
            response = await self.client.get(
                self.base + path,
                headers={"X-aws-ec2-metadata-token": token},
                timeout=c.METADATA_TIMEOUT_S,
            )
            if response.status_code == 401:  # the token expired early (instance stop/start)
                self._token = None
                continue
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return response
        raise httpx.HTTPError("IMDS refused two fresh tokens")

    async def text(self, path: str) -> str:
        """A value that must be there (the instance id): its text, or an error naming the path."""
        response = await self.get(path)
        if response is None or not response.text.strip():
            raise httpx.HTTPError(f"IMDS has nothing at {path}")
        return response.text.strip()

    async def identity(self) -> InstanceIdentity:
        return InstanceIdentity(await self.text(INSTANCE_ID_PATH), await self.text(REGION_PATH))

    async def _session_token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            response = await self.client.put(
                self.base + TOKEN_PATH,
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(c.AWS_TOKEN_TTL_S)},
                timeout=c.METADATA_TIMEOUT_S,
            )
            response.raise_for_status()
            self._token = response.text.strip()
            self._token_expires = time.monotonic() + c.AWS_TOKEN_TTL_S - 60
        return self._token
