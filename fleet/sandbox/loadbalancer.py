"""A pool's load balancer, emulated as the rendered target group behaves (ELBv2's documented semantics):

- targets start `initial` when registered and get traffic only once `healthy`: `healthyThreshold`
  consecutive passing checks of the health path (status in the matcher, within the timeout), one every
  `interval`; `unhealthyThreshold` consecutive failures make a target `unhealthy`;
- `least_outstanding_requests` picks the routable target with the fewest requests in flight (ties at
  random), `round_robin` takes them in turn; with no healthy target it fails open, to every registered
  target that is not draining (as an ALB does), and with none at all it answers 503;
- a deregistered target is `draining`: no new requests, those in flight may finish for up to the
  deregistration delay, then their connections are closed;
- a request whose target refuses or drops the connection before answering gets 502, one that times out
  504 (an ALB does not retry); a response cut after it started is cut for the client too (the connection
  closes without the end of the body), never ended cleanly.

`Elbv2Api` answers DescribeTargetHealth for these target groups (the fleet controller's view of them):
moto reports every registered target healthy, which would hide every fault from the controller."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import botocore.session
import httpx

from fleet.sandbox.asgi import Receive, Scope, Send, read_body, respond
from fleet.sandbox.events import Events
from fleet.sandbox.plan import TargetGroupSpec

# Hop-by-hop headers (RFC 9110, 7.6.1) a proxy never forwards.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"transfer-encoding", b"upgrade", b"host", b"content-length"}
)  # fmt: skip
REQUEST_TIMEOUT_S = 600.0  # the pools' load balancers' idle timeout (the gateway's request timeout)
REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "unhealthy": ("Target.ResponseCodeMismatch", "Health checks failed"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
}


@dataclass
class Target:
    id: str
    host: str
    port: int
    state: str = "initial"
    passes: int = 0
    failures: int = 0
    inflight: int = 0
    streaming: int = 0  # answers whose body has begun reaching the client and has not ended
    last_check: str = ""
    registered_at: float = field(default_factory=time.time)
    changed_at: float = field(default_factory=time.time)
    requests: set[asyncio.Task[Any]] = field(default_factory=set)


class TargetGroup:
    def __init__(self, spec: TargetGroupSpec, pool: str, events: Events) -> None:
        self.spec = spec
        self.pool = pool
        self.events = events
        self.targets: dict[str, Target] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._drains: set[asyncio.Future[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.served = 0
        self.refused = 0  # 502/503/504 this load balancer answered itself

    # --- registration (from any thread) ------------------------------------------------------------
    def register(self, target_id: str, host: str, port: int) -> None:
        with self._lock:
            self.targets[target_id] = Target(target_id, host, port)
        self.events.add("lb-target", pool=self.pool, target=target_id, state="initial")
        self._on_loop(self._start_checks, target_id)

    def deregister(self, target_id: str) -> None:
        """Draining: no new requests; removed once idle or after the deregistration delay."""
        with self._lock:
            target = self.targets.get(target_id)
            if target is None or target.state == "draining":
                return
            self._set(target, "draining")
        self._on_loop(self._drain, target_id)

    def drained(self, target_id: str) -> bool:
        with self._lock:
            return target_id not in self.targets

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": t.id,
                    "port": t.port,
                    "state": t.state,
                    "inflight": t.inflight,
                    "streaming": t.streaming,
                    "check": t.last_check,
                }
                for t in self.targets.values()
            ]

    def most_streaming(self) -> str | None:
        """The target with the most answers mid-body; None while no answer is mid-body."""
        with self._lock:
            busy = max(self.targets.values(), key=lambda t: t.streaming, default=None)
            return busy.id if busy is not None and busy.streaming else None

    def streaming_on(self, target_id: str) -> int:
        with self._lock:
            target = self.targets.get(target_id)
            return target.streaming if target else 0

    def state_of(self, target_id: str) -> str | None:
        with self._lock:
            target = self.targets.get(target_id)
            return target.state if target else None

    def _set(self, target: Target, state: str) -> None:
        if target.state != state:
            target.state = state
            target.changed_at = time.time()
            self.events.add(
                "lb-target", pool=self.pool, target=target.id, state=state, check=target.last_check
            )

    def _on_loop(self, function: Callable[..., Any], *args: Any) -> None:
        if self.loop is None:
            raise RuntimeError("the load balancer is not serving yet")
        self.loop.call_soon_threadsafe(function, *args)

    # --- health checks ------------------------------------------------------------------------------
    def _start_checks(self, target_id: str) -> None:
        previous = self._checks.pop(target_id, None)
        if previous is not None:  # registered again (a region back from a loss): one check loop a target
            previous.cancel()
        self._checks[target_id] = asyncio.ensure_future(self._check_loop(target_id))

    async def _check_loop(self, target_id: str) -> None:
        health = self.spec.health
        # Checks of a new target start within the first interval (ELBv2 staggers them).
        await asyncio.sleep(random.uniform(0, min(1.0, health.interval_s)))
        assert self._client is not None
        while True:
            with self._lock:
                target = self.targets.get(target_id)
            if target is None:
                return
            url = f"http://{target.host}:{target.port}{health.path}"
            try:
                answer = await self._client.get(url, timeout=health.timeout_s)
                passed = health.accepts(answer.status_code)
                target.last_check = f"HTTP {answer.status_code}"
            except httpx.TimeoutException:
                passed, target.last_check = False, "timeout"
            except httpx.HTTPError as exc:
                passed, target.last_check = False, type(exc).__name__
            with self._lock:
                if passed:
                    target.passes, target.failures = target.passes + 1, 0
                    if target.state in ("initial", "unhealthy") and target.passes >= health.healthy_threshold:
                        self._set(target, "healthy")
                else:
                    target.passes, target.failures = 0, target.failures + 1
                    if target.state == "healthy" and target.failures >= health.unhealthy_threshold:
                        self._set(target, "unhealthy")
            await asyncio.sleep(health.interval_s)

    def _drain(self, target_id: str) -> None:
        self._drains.add(task := asyncio.ensure_future(self._drain_then_remove(target_id)))
        task.add_done_callback(self._drains.discard)

    async def _drain_then_remove(self, target_id: str) -> None:
        deadline = time.monotonic() + self.spec.deregistration_delay_s
        with self._lock:
            target = self.targets.get(target_id)
        if target is None:
            return
        while target.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for request in list(target.requests):  # past the delay: their connections are closed
            request.cancel()
        with self._lock:
            self.targets.pop(target_id, None)
        check = self._checks.pop(target_id, None)
        if check is not None:
            check.cancel()
        self.events.add("lb-target", pool=self.pool, target=target_id, state="removed", cut=target.inflight)

    # --- routing ------------------------------------------------------------------------------------
    def pick(self) -> Target | None:
        with self._lock:
            registered = [t for t in self.targets.values() if t.state != "draining"]
            healthy = [t for t in registered if t.state == "healthy"]
            candidates = healthy or [t for t in registered if t.state != "initial"] or registered
            if not candidates:
                return None
            if self.spec.algorithm == "least_outstanding_requests":
                fewest = min(t.inflight for t in candidates)
                chosen = random.choice([t for t in candidates if t.inflight == fewest])
            else:
                chosen = candidates[next(self._turn) % len(candidates)]
            chosen.inflight += 1
            return chosen

    async def serve(self, port: int) -> None:
        """Run on the current loop until cancelled: the health checks and the listener on `port`."""
        self.loop = asyncio.get_running_loop()
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        self._client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=5))
        await serve_app(self, port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        target = self.pick()
        if target is None:
            self.refused += 1
            await respond(send, 503, "503 Service Temporarily Unavailable", "text/html")
            return
        task = asyncio.current_task()
        assert task is not None and self._client is not None
        target.requests.add(task)
        try:
            await self._forward(scope, body, send, target)
        finally:
            target.requests.discard(task)
            with self._lock:
                target.inflight -= 1

    async def _forward(self, scope: Scope, body: bytes, send: Send, target: Target) -> None:
        assert self._client is not None
        query = scope.get("query_string", b"").decode()
        url = f"http://{target.host}:{target.port}{scope['path']}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        request = self._client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            self.refused += 1
            await respond(send, 504, "504 Gateway Time-out", "text/html")
            return
        except httpx.HTTPError:
            self.refused += 1
            await respond(send, 502, "502 Bad Gateway", "text/html")
            return
        self.served += 1
        streaming = False
        try:
            response_headers = [
                (k.lower(), v) for k, v in upstream.headers.raw if k.lower() not in HOP_BY_HOP
            ]
            await send(
                {"type": "http.response.start", "status": upstream.status_code, "headers": response_headers}
            )
            # Raw bytes as they come: the client sees the same stream, and a cut one stays cut (an error
            # escaping here closes the client's connection without the body's end).
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if chunk and not streaming:
                    streaming = True
                    with self._lock:
                        target.streaming += 1
            await send({"type": "http.response.body", "body": b""})
        finally:
            if streaming:
                with self._lock:
                    target.streaming -= 1
            await upstream.aclose()

    async def close(self) -> None:
        for check in self._checks.values():
            check.cancel()
        if self._client is not None:
            await self._client.aclose()


class Elbv2Api:
    """Elastic Load Balancing v2's query API over the emulated target groups (keyed by the ARNs the render
    gives them): DescribeTargetHealth (the controller) and DeregisterTargets (an agent leaving before it
    refuses work: the target drains as for any deregistration)."""

    def __init__(self, groups: dict[str, TargetGroup]) -> None:
        self.groups = groups
        self.namespace = botocore.session.get_session().get_service_model("elbv2").metadata["xmlNamespace"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        params = dict(parse_qsl((await read_body(receive)).decode()))
        action = params.get("Action", "")
        if action not in ("DescribeTargetHealth", "DeregisterTargets"):
            await self._error(
                send,
                "InvalidAction",
                f"{action}: the sandbox answers DescribeTargetHealth and DeregisterTargets",
            )
            return
        group = self.groups.get(params.get("TargetGroupArn", ""))
        if group is None:
            await self._error(send, "TargetGroupNotFound", "One or more target groups not found", 400)
            return
        if action == "DeregisterTargets":
            await self._deregister(group, params, send)
            return
        members = []
        for target in group.describe():
            health = f"<State>{target['state']}</State>"
            if target["state"] in REASONS:
                reason, description = REASONS[target["state"]]
                health += f"<Reason>{reason}</Reason><Description>{escape(description)}</Description>"
            members.append(
                f"<member><Target><Id>{escape(target['id'])}</Id><Port>{target['port']}</Port></Target>"
                f"<HealthCheckPort>{target['port']}</HealthCheckPort><TargetHealth>{health}</TargetHealth></member>"
            )
        xml = (
            f'<DescribeTargetHealthResponse xmlns="{self.namespace}"><DescribeTargetHealthResult>'
            f"<TargetHealthDescriptions>{''.join(members)}</TargetHealthDescriptions>"
            f"</DescribeTargetHealthResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></DescribeTargetHealthResponse>"
        )
        await respond(send, 200, xml, "text/xml")

    async def _deregister(self, group: TargetGroup, params: dict[str, str], send: Send) -> None:
        ids = [v for k, v in sorted(params.items()) if re.fullmatch(r"Targets\.member\.\d+\.Id", k)]
        registered = {t["id"] for t in group.describe()}
        unknown = [i for i in ids if i not in registered]
        if not ids or unknown:
            await self._error(send, "InvalidTarget", f"The following targets are not registered: {unknown}")
            return
        for target_id in ids:
            group.deregister(target_id)
        xml = (
            f'<DeregisterTargetsResponse xmlns="{self.namespace}"><DeregisterTargetsResult/>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></DeregisterTargetsResponse>"
        )
        await respond(send, 200, xml, "text/xml")

    async def _error(self, send: Send, code: str, message: str, status: int = 400) -> None:
        xml = (
            f'<ErrorResponse xmlns="{self.namespace}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        await respond(send, status, xml, "text/xml")


async def serve_app(app: Any, port: int) -> None:
    """An ASGI app on 127.0.0.1:`port` on the current loop, until cancelled. Signals stay the
    supervisor's: uvicorn would otherwise take SIGTERM for itself in the main thread."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    with contextlib.suppress(asyncio.CancelledError):
        await Server(config).serve()
