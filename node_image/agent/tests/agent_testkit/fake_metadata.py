"""Fake cloud metadata services on loopback, speaking the real protocols.

AWS IMDSv2: PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds gives a token; every GET
needs it in X-aws-ec2-metadata-token (401 without); spot/instance-action and the rebalance
recommendation answer 404 until a notice is posted; autoscaling/target-lifecycle-state answers once the
instance is in a group. The instance's identity (instance-id, placement/region) and its role's
credentials (iam/security-credentials/, then /<role>, as botocore reads them) are served too.

GCE: /computeMetadata/v1/instance/{preempted,maintenance-event} need `Metadata-Flavor: Google`
(403 without), answer with that header and an ETag, and with wait_for_change=true hang until the
value differs from last_etag or timeout_sec passes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import threading
from typing import Any

from .asgi import Receive, Scope, Send, header, query, respond

NOT_FOUND_HTML = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>404 - Not Found</title></head>'
    "<body><h1>404 - Not Found</h1></body></html>\n"
)


class FakeImds:
    def __init__(self, instance_id: str = "i-0123456789abcdef0", region: str = "us-east-1") -> None:
        self.tokens: set[str] = set()
        self.spot_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.target_lifecycle_state: str | None = None  # None: not in an Auto Scaling group
        self.instance_id = instance_id
        self.region = region
        self.role = "fleet-node"
        # What the instance role's temporary credentials look like (IMDS security-credentials document).
        self.credentials = {
            "Code": "Success",
            "LastUpdated": "2026-11-23T10:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAFAKEIMDSROLEKEY1",
            "SecretAccessKey": secrets.token_urlsafe(30),
            "Token": secrets.token_urlsafe(60),
            "Expiration": "2099-01-01T00:00:00Z",
        }
        self.token_requests = 0
        self.unauthorized = 0

    def expire_tokens(self) -> None:
        self.tokens.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/latest/api/token":
            ttl = header(scope, "x-aws-ec2-metadata-token-ttl-seconds")
            if method != "PUT" or ttl is None or not 1 <= int(ttl) <= 21600:
                await respond(send, 400, "")
                return
            token = secrets.token_urlsafe(32)
            self.tokens.add(token)
            self.token_requests += 1
            await respond(send, 200, token, headers={"x-aws-ec2-metadata-token-ttl-seconds": ttl})
            return
        if header(scope, "x-aws-ec2-metadata-token") not in self.tokens:
            self.unauthorized += 1
            await respond(send, 401, "")
            return
        document: dict[str, Any] | str | None = None
        credentials = "/latest/meta-data/iam/security-credentials/"
        if path == "/latest/meta-data/spot/instance-action":
            document = self.spot_action
        elif path == "/latest/meta-data/events/recommendations/rebalance":
            document = self.rebalance
        elif path == "/latest/meta-data/autoscaling/target-lifecycle-state":
            document = self.target_lifecycle_state
        elif path == "/latest/meta-data/instance-id":
            document = self.instance_id
        elif path == "/latest/meta-data/placement/region":
            document = self.region
        elif path == credentials:
            document = self.role
        elif path == credentials + self.role:
            document = self.credentials
        if document is None:
            await respond(send, 404, NOT_FOUND_HTML, "text/html")
        else:
            text = document if isinstance(document, str) else json.dumps(document)
            await respond(send, 200, text, "text/plain")


class FakeGceMetadata:
    PREFIX = "/computeMetadata/v1/instance/"

    def __init__(self) -> None:
        self.values = {"preempted": "FALSE", "maintenance-event": "NONE"}
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.waits = 0

    def set(self, key: str, value: str) -> None:
        """Change a value from the test's thread; hanging watchers wake up."""
        with self._lock:
            self.values[key] = value
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    def etag(value: str) -> str:
        return hashlib.sha1(value.encode()).hexdigest()[:16]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._changed is None:
            self._loop = asyncio.get_running_loop()
            self._changed = asyncio.Condition()
        if header(scope, "metadata-flavor") != "Google":
            await respond(send, 403, "Missing required header: Metadata-Flavor", "text/html")
            return
        key = scope["path"].removeprefix(self.PREFIX)
        if not scope["path"].startswith(self.PREFIX) or key not in self.values:
            await respond(send, 404, "Not Found", "text/html")
            return
        params = query(scope)
        if params.get("wait_for_change") == "true":
            self.waits += 1
            last = params.get("last_etag") or self.etag(self.values[key])
            timeout = float(params.get("timeout_sec", 3600))
            async with self._changed:
                with contextlib.suppress(TimeoutError):  # unchanged: answer the same value, as GCE does
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.etag(self.values[key]) != last), timeout
                    )
        value = self.values[key]
        await respond(
            send,
            200,
            value,
            "application/text",
            headers={"Metadata-Flavor": "Google", "ETag": self.etag(value)},
        )


class WebhookReceiver:
    """Records the drained-hook POSTs it gets; answers `status` (200 unless a test says otherwise)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        self.calls.append(json.loads(body) if body else {})
        await respond(send, self.status, {"ok": self.status < 300})
