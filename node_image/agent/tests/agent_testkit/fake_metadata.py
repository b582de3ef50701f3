"""Fake cloud metadata services on loopback, speaking the real protocols.

AWS IMDSv2: the sandbox's emulated metadata service (`fleet.sandbox.imds`), re-exported here.

GCE: /computeMetadata/v1/instance/{preempted,maintenance-event} need `Metadata-Flavor: Google`
(403 without), answer with that header and an ETag, and with wait_for_change=true hang until the
value differs from last_etag or timeout_sec passes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from typing import Any

from fleet.sandbox.imds import EmulatedImds as FakeImds

from .asgi import Receive, Scope, Send, header, query, respond

__all__ = ["FakeGceMetadata", "FakeImds", "WebhookReceiver"]


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
