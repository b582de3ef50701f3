"""The node's HTTP face on its serving port: health endpoints for the load balancer and the
supervisor, /status and /metrics for people and Prometheus, and the engine proxy for the rest.

A raw ASGI app: six fixed routes do not need a framework, and the proxy's hot path stays short."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

import httpx
import uvicorn

from fleet_agent import constants as c
from fleet_agent import metrics
from fleet_agent.proxy import RESPONSE_ABORTED, Proxy, Receive, Scope, Send, openai_error, send_json
from fleet_agent.state import State

if TYPE_CHECKING:
    from fleet_agent.agent import Agent

log = logging.getLogger("fleet_agent.server")


class AgentApp:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.proxy = Proxy(agent)
        self.routes = {
            c.LIVENESS_PATH: self.livez,
            c.READINESS_PATH: self.readyz,
            "/startupz": self.startupz,
            "/status": self.status,
            "/metrics": self.metrics,
            "/metrics/engine": self.engine_metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not served
        path: str = scope["path"]
        route = self.routes.get(path)
        if route is not None:
            if scope["method"] not in ("GET", "HEAD"):
                await send_json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET, HEAD")])
                return
            await route(send)
        elif self.agent.adapter.proxies(path):
            await self.proxy(scope, receive, send)
        else:
            await send_json(send, 404, openai_error(f"no route {path}", "invalid_request_error", "not_found"))

    async def livez(self, send: Send) -> None:
        # The agent answers: it is alive. Whether it should get traffic is /readyz's business.
        await send_json(send, 200, {"alive": True, "state": self.agent.state.state.value})

    async def readyz(self, send: Send) -> None:
        state = self.agent.state
        body = {"ready": state.ready, "state": state.state.value, "reasons": state.reasons}
        await send_json(send, 200 if state.ready else 503, body)

    async def startupz(self, send: Send) -> None:
        state = self.agent.state
        started = state.started or state.state in (State.DRAINING, State.STOPPED)
        await send_json(send, 200 if started else 503, {"started": started, "state": state.state.value})

    async def status(self, send: Send) -> None:
        payload = json.dumps(self.agent.status(), indent=2, default=str).encode()
        await _send_bytes(send, 200, payload, b"application/json")

    async def metrics(self, send: Send) -> None:
        self.agent.collect_gauges()
        await _send_bytes(send, 200, self.agent.metrics.render().encode(), metrics.CONTENT_TYPE.encode())

    async def engine_metrics(self, send: Send) -> None:
        """The engine's own metrics, which Prometheus cannot reach on 127.0.0.1."""
        adapter = self.agent.adapter
        if adapter.metrics_path is None:
            await send_json(send, 404, {"error": f"{adapter.kind} has no metrics endpoint"})
            return
        try:
            response = await self.agent.probe_client.get(adapter.base_url + adapter.metrics_path, timeout=5.0)
        except httpx.HTTPError as exc:
            await send_json(send, 502, {"error": f"engine metrics unavailable: {exc!r}"})
            return
        await _send_bytes(send, response.status_code, response.content, metrics.CONTENT_TYPE.encode())


async def _send_bytes(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class HttpServer(uvicorn.Server):
    """uvicorn, minus its signal handling: SIGTERM belongs to the agent, which drains first and
    only then tells the server to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind the serving socket up front, so a port in use is one clear error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must name TCP: asyncio sets TCP_NODELAY on accepted connections only then, and without it
    # a response's head and body meet Nagle's algorithm and the client's delayed ACK (+40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _AbortedOnPurpose(logging.Filter):
    """uvicorn logs an error for an app that returns mid-response; the proxy does that on purpose when
    the engine broke a response off (and logs it itself, with the request id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (RESPONSE_ABORTED.get() and "without completing response" in record.getMessage())


logging.getLogger("uvicorn.error").addFilter(_AbortedOnPurpose())


def make_server(app: AgentApp, *, timeout_graceful_shutdown: int) -> HttpServer:
    config = uvicorn.Config(
        app,
        log_config=None,  # the agent's logging setup applies
        access_log=False,  # the proxy logs each request itself, with its id
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        timeout_keep_alive=75,  # longer than a load balancer's idle timeout (60 s on an ALB)
    )
    return HttpServer(config)
