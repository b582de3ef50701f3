"""A pool's load balancer on loopback, emulated from ELBv2's documented behaviour, with moto as its control
plane: the targets registered in the moto target group are what it routes to, read again every `sync_s`
(the API answers at once; the load balancer's nodes learn of a change a little later).

- A registered target gets requests once `healthy_threshold` health checks of `health_path` in a row
  pass (one every `interval_s`); `unhealthy_threshold` failures in a row take it out.
- Requests go round robin to the healthy registered targets; with none healthy it fails open to every
  registered one (as an ALB does), and with none registered it answers 503.
- A deregistered target gets no new requests; those in flight run to their end (the deregistration delay
  is longer than any test).
- A target that refuses the connection gives 502; a response cut after it began is cut for the client too
  (the connection closes without the end of the body), never ended cleanly.

Each instance id maps to the loopback address of the agent playing it. `served` counts requests by target.
(The sandbox, `fleet sandbox`, carries a fuller one; this is the agent test kit's own, for drains.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from .asgi import Receive, Scope, Send, read_body, respond
from .fake_autoscaling import moto_client

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"host", b"content-length"})


@dataclass
class _Target:
    url: str
    registered: bool = False
    healthy: bool = False
    passes: int = 0
    failures: int = 0


class EmulatedTargetGroup:
    def __init__(
        self,
        moto_url: str,
        target_group_arn: str,
        targets: dict[str, str],
        *,
        interval_s: float = 1.0,
        healthy_threshold: int = 2,
        unhealthy_threshold: int = 2,
        sync_s: float = 0.5,
        health_path: str = "/readyz",
    ) -> None:
        self.arn = target_group_arn
        self.targets = {instance: _Target(url) for instance, url in targets.items()}
        self.interval_s = interval_s
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.sync_s = sync_s
        self.health_path = health_path
        self.served: Counter[str] = Counter()
        self.refused_no_target = 0
        self._elbv2 = moto_client("elbv2", moto_url)
        self._turn = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def routable(self) -> list[str]:
        registered = [i for i, t in self.targets.items() if t.registered]
        healthy = [i for i in registered if self.targets[i].healthy]
        return healthy or registered  # fail open when none is healthy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(timeout=httpx.Timeout(600, connect=2))
                await self._sync()
                self._tasks = [asyncio.create_task(self._sync_loop())]
                self._tasks += [asyncio.create_task(self._check_loop(t)) for t in self.targets.values()]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _sync(self) -> None:
        answer = await asyncio.to_thread(self._elbv2.describe_target_health, TargetGroupArn=self.arn)
        registered = {d["Target"]["Id"] for d in answer["TargetHealthDescriptions"]}
        for instance, target in self.targets.items():
            target.registered = instance in registered

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            with contextlib.suppress(Exception):  # moto busy: the last view stands, as an LB node's would
                await self._sync()

    async def _check_loop(self, target: _Target) -> None:
        assert self._client is not None
        while True:
            try:
                answer = await self._client.get(target.url + self.health_path, timeout=self.interval_s)
                passed = answer.status_code == 200
            except httpx.HTTPError:
                passed = False
            if passed:
                target.passes, target.failures = target.passes + 1, 0
                target.healthy = target.healthy or target.passes >= self.healthy_threshold
            else:
                target.passes, target.failures = 0, target.failures + 1
                target.healthy = target.healthy and target.failures < self.unhealthy_threshold
            await asyncio.sleep(self.interval_s)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._client is not None
        routable = self.routable()
        if not routable:
            self.refused_no_target += 1
            await respond(send, 503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")
            return
        instance = routable[next(self._turn) % len(routable)]
        self.served[instance] += 1
        body = await read_body(receive)
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        url = self.targets[instance].url + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode()
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            await respond(send, 502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
            return
        try:
            out = [(k, v) for k, v in upstream.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": upstream.status_code, "headers": out})
            try:
                async for piece in upstream.aiter_raw():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            except httpx.HTTPError:
                return  # cut for the client too: uvicorn drops a connection whose response is unfinished
            await send({"type": "http.response.body", "body": b""})
        finally:
            await upstream.aclose()


def describe(moto_url: str, arn: str) -> dict[str, str]:
    """Registered targets and their state, as the ELBv2 API tells them."""
    answer: Any = moto_client("elbv2", moto_url).describe_target_health(TargetGroupArn=arn)
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in answer["TargetHealthDescriptions"]}
