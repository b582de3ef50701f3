"""The proxy in front of the engine's API: API key, request id, readiness gate, streaming passed
through chunk by chunk, receipt headers, per-request metrics and one access-log line.

Ordering that keeps the drain promise: a request is counted in flight before readiness is looked
at, so a drain that turns readiness off and then waits for zero in flight never misses one that was
let in. Once let in, a request runs to its end whatever the state does. A leaving node still lets
requests in while its load balancer stops sending them (`Drainer.accepting`).

A response the engine breaks off (it exits, is OOM-killed, resets the connection, stalls, or ends an
OpenAI stream without `[DONE]`) is never ended cleanly: a clean end would read as a complete answer (and
LiteLLM adds `finish_reason: "stop"` to it). The client gets what the engine sent up to its last whole
event, then an error event in the OpenAI streaming error shape (`{"error": {...}}`; Ollama's NDJSON shape
on its native API), then the connection is dropped without the chunked body's last chunk. The OpenAI SDK
raises `APIError` on the event, and LiteLLM passes it on as an error frame without `[DONE]`."""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fleet_agent import constants as c
from fleet_agent.upstream import UpstreamError, UpstreamPool, UpstreamResponse

if TYPE_CHECKING:
    from fleet_agent.agent import Agent

log = logging.getLogger("fleet_agent.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself.
DROPPED_REQUEST_HEADERS = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-authorization", b"te", b"trailer", b"transfer-encoding"}
    | {b"upgrade", b"authorization", b"x-api-key", b"content-length", b"expect", b"x-request-id"}
)
DROPPED_RESPONSE_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
    | {b"server", b"date", b"x-request-id"}
)
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1," + str(c.REQUEST_ID_MAX_LEN) + "}")
# Bounded label values for the request metrics; other paths are counted as "other".
KNOWN_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/responses"}
    | {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/tags", "/api/show", "/api/ps"}
)


def json_response_parts(status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None):
    payload = json.dumps(body, separators=(",", ":")).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *(headers or []),
        ],
    }
    return start, {"type": "http.response.body", "body": payload}


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
):
    start, body_message = json_response_parts(status, body, headers)
    await send(start)
    await send(body_message)


def openai_error(message: str, kind: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


# Set in the task of a request whose connection the proxy drops on purpose (uvicorn logs that as an
# error in the same task, once the app returns: server.py keeps that line out of the log).
RESPONSE_ABORTED: contextvars.ContextVar[bool] = contextvars.ContextVar("response_aborted", default=False)
# OpenAI streams a completion ends with this event; one that ends without it was cut.
OPENAI_STREAM_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
SSE_DONE = b"data: [DONE]"


class _Framing:
    """Where a streamed body's events end: the proxy forwards whole events only, so an error event it
    adds never lands inside one the engine left half-sent."""

    __slots__ = ("error_event", "separators")

    def __init__(self, separators: tuple[bytes, ...], error_event: Callable[[str], bytes]) -> None:
        self.separators = separators
        self.error_event = error_event

    def split(self, data: bytes) -> int:
        """The length of `data`'s whole events."""
        return max(data.rfind(sep) + len(sep) if sep in data else 0 for sep in self.separators)


def _sse_error(message: str) -> bytes:
    error = openai_error(message, "server_error", "engine_stream_broken")
    return b"data: " + json.dumps(error, separators=(",", ":")).encode() + b"\n\n"


def _ndjson_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode() + b"\n"  # Ollama's shape for an error mid-stream


SSE = _Framing((b"\n\n", b"\r\n\r\n", b"\r\r"), _sse_error)
NDJSON = _Framing((b"\n",), _ndjson_error)


def _bufferable(response: UpstreamResponse) -> bool:
    length = response.content_length
    return length is not None and length <= c.BUFFERED_RESPONSE_MAX_BYTES and framing_of(response) is None


def framing_of(response: UpstreamResponse) -> _Framing | None:
    for name, value in response.headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media == b"text/event-stream":
                return SSE
            if media in (b"application/x-ndjson", b"application/jsonl"):
                return NDJSON
    return None


class Proxy:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        config = agent.config
        self._keys = [key.get_secret_value().encode() for key in config.server.api_keys]
        self._node = config.node.id.encode()
        self._engine = config.engine.kind.encode()
        self._primary_model = agent.adapter.primary_model
        self._models = set(config.engine.models)
        engine = config.engine
        self._stall_s = config.server.stream_stall_timeout_s
        self._upstream = UpstreamPool(
            "127.0.0.1",
            engine.bind_port,
            connect_timeout=c.UPSTREAM_CONNECT_TIMEOUT_S,
            read_timeout=c.UPSTREAM_READ_TIMEOUT_S,
        )
        metrics = agent.metrics
        self._node_metrics = agent.node_metrics
        self._requests = metrics.requests
        self._duration = metrics.request_seconds
        self._ttfb = metrics.first_byte_seconds
        self._rejected = metrics.rejected
        self._broken = metrics.broken_responses

    async def close(self) -> None:
        await self._upstream.aclose()

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        presented = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
            if name == b"x-api-key":
                presented = value.strip()
        if not presented:
            return False
        # Compare against every key so the time taken does not say which one nearly matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _request_id(headers)
        path: str = scope["path"]
        route = path if path in KNOWN_ROUTES else "other"
        id_header = (c.REQUEST_ID_HEADER.encode(), request_id.encode())

        if not self._authorized(headers):
            self._rejected.inc(("unauthorized",))
            log.info("request id=%s %s %s status=401 (no valid API key)", request_id, scope["method"], path)
            await send_json(
                send,
                401,
                openai_error("missing or invalid API key", "invalid_request_error", "invalid_api_key"),
                [id_header, (b"www-authenticate", b'Bearer realm="fleet-agent"')],
            )
            return

        traffic = self.agent.traffic
        traffic.begin()
        outcome = _Outcome()
        try:
            await self._forward(scope, receive, send, id_header, outcome)
        finally:
            traffic.end()
            elapsed = time.perf_counter() - started
            code = str(outcome.status)
            self._requests.inc((route, code))
            self._duration.observe(elapsed, (route, code))
            if outcome.first_byte:
                self._ttfb.observe(outcome.first_byte - started, (route,))
            first_token = outcome.first_chunk - started if outcome.streamed and outcome.first_chunk else None
            self._node_metrics.request_finished(
                time.time(), route=path, status=outcome.status, latency_s=elapsed, first_token_s=first_token
            )
            log.info(
                "request id=%s %s %s status=%d ms=%.1f bytes=%d%s",
                request_id,
                scope["method"],
                path,
                outcome.status,
                elapsed * 1000,
                outcome.sent_bytes,
                f" ({outcome.note})" if outcome.note else "",
            )

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, id_header: tuple[bytes, bytes], outcome: _Outcome
    ) -> None:
        state = self.agent.state
        if not (state.ready or self.agent.drainer.accepting):
            outcome.status = 503
            self._rejected.inc(("not_ready",))
            await send_json(
                send,
                503,
                openai_error(f"node not ready ({state.state})", "server_error", "node_not_ready"),
                [id_header, (b"retry-after", str(c.RETRY_AFTER_S).encode())],
            )
            return
        try:
            body = await _read_body(receive)
        except ClientGone:
            outcome.status, outcome.note = 499, "client went away before sending its body"
            return
        if body is None:
            outcome.status = 413
            error = openai_error("request body too large", "invalid_request_error", "body_too_large")
            await send_json(send, 413, error, [id_header])
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in DROPPED_REQUEST_HEADERS]
        headers.append(id_header)
        query = scope.get("query_string", b"")
        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if query:
            target += "?" + query.decode("latin-1")
        # From here the engine works for this client: if it goes away, stop the engine's work too.
        async with _CancelOnDisconnect(receive) as guard:
            try:
                response = await self._upstream.request(scope["method"], target, headers, body)
            except UpstreamError as exc:
                outcome.status, outcome.note = 502, str(exc)
                error = openai_error("engine unreachable", "server_error", "engine_unreachable")
                await send_json(send, 502, error, [id_header])
                return
            try:
                whole = None
                if _bufferable(response):
                    try:
                        whole = await self._read_whole(response)
                    except (UpstreamError, TimeoutError) as exc:
                        outcome.status, outcome.note = 502, f"engine broke off its answer: {exc!r}"
                        error = openai_error("engine unreachable", "server_error", "engine_unreachable")
                        await send_json(send, 502, error, [id_header])
                        return
                outcome.status = response.status
                outcome.streamed = framing_of(response) is not None
                start = {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": self._response_headers(response, body, id_header),
                }
                await send(start)
                outcome.first_byte = time.perf_counter()
                if whole is None:
                    await self._stream(response, send, outcome, guard, scope["path"])
                else:
                    outcome.sent_bytes = len(whole)
                    guard.finish()
                    await send({"type": "http.response.body", "body": whole})
            finally:
                await response.aclose()  # mid-body, this closes the connection: the engine stops
        if guard.client_gone:
            outcome.status = outcome.status or 499
            outcome.note = "client went away"

    async def _read_whole(self, response: UpstreamResponse) -> bytes:
        pieces: list[bytes] = []
        async with asyncio.timeout(self._stall_s):
            async for piece in response.body():
                pieces.append(piece)
        whole = b"".join(pieces)
        self.agent.traffic.upstream_bytes += len(whole)
        return whole

    async def _stream(
        self, response: UpstreamResponse, send: Send, outcome: _Outcome, guard: _CancelOnDisconnect, path: str
    ) -> None:
        """Pass each chunk on as the engine sends it; a response the engine breaks off ends visibly."""
        traffic = self.agent.traffic
        framing = framing_of(response) if response.status == 200 else None
        held = b""  # the start of an event the engine has not finished sending
        tail = b""  # the last bytes seen, for the stream's final event
        broken, reason = "", ""
        loop = asyncio.get_running_loop()
        chunks = response.body()
        # Until the first byte the engine may be prefilling (the read timeout bounds that); after it,
        # silence for the stall timeout means the stream is dead.
        wait_s = c.UPSTREAM_READ_TIMEOUT_S
        try:
            async with asyncio.timeout(None) as stall:
                while True:
                    stall.reschedule(loop.time() + wait_s)
                    chunk = await anext(chunks, None)
                    stall.reschedule(None)  # a slow client is not a stalled engine
                    if chunk is None:
                        break
                    if not outcome.first_chunk and chunk:
                        outcome.first_chunk = time.perf_counter()
                    wait_s = self._stall_s
                    traffic.upstream_bytes += len(chunk)
                    tail = (tail + chunk)[-64:]
                    if framing is not None:
                        held += chunk
                        whole = framing.split(held)
                        if not whole:
                            continue
                        chunk, held = held[:whole], held[whole:]
                    outcome.sent_bytes += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            broken, reason = f"the engine broke off the response ({exc})", "engine_closed"
        except TimeoutError:
            broken, reason = f"the engine sent nothing for {wait_s:g} s", "stalled"
        else:
            if framing is SSE and path in OPENAI_STREAM_PATHS and not tail.rstrip().endswith(SSE_DONE):
                broken, reason = "the engine ended the stream without [DONE]", "incomplete"
        if broken:
            await self._abort(send, outcome, framing, broken, reason)
            return
        if held:
            await send({"type": "http.response.body", "body": held, "more_body": True})
        guard.finish()
        await send({"type": "http.response.body", "body": b""})

    async def _abort(
        self, send: Send, outcome: _Outcome, framing: _Framing | None, problem: str, reason: str
    ) -> None:
        """Tell the client the answer is incomplete, then drop the connection without ending the body:
        uvicorn closes a connection whose app returns mid-response."""
        self._broken.inc((reason,))
        outcome.note = f"response broken off: {problem}"
        if framing is not None:
            message = f"{problem}: the answer is incomplete (node {self.agent.config.node.id})"
            await send(
                {"type": "http.response.body", "body": framing.error_event(message), "more_body": True}
            )
        RESPONSE_ABORTED.set(True)

    def _response_headers(
        self, response: UpstreamResponse, body: bytes, id_header: tuple[bytes, bytes]
    ) -> list[tuple[bytes, bytes]]:
        headers = [(k, v) for k, v in response.headers if k not in DROPPED_RESPONSE_HEADERS]
        headers += [
            id_header,
            (b"x-fleet-node", self._node),
            (b"x-fleet-engine", self._engine),
            (b"x-fleet-model", self._model_of(body).encode()),
            (b"x-fleet-gpu", b"true" if self.agent.serves_on_gpu() else b"false"),
        ]
        return headers

    def _model_of(self, body: bytes) -> str:
        """The model the request names, when the node serves several; else the one it serves."""
        if len(self._models) == 1 or not body:
            return self._primary_model
        try:
            named = json.loads(body).get("model")
        except (ValueError, AttributeError):
            return self._primary_model
        return named if named in self._models else self._primary_model


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID_PATTERN.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class ClientGone(Exception):
    pass


class _CancelOnDisconnect:
    """Cancels the request's task when the client disconnects, and absorbs that cancellation.

    Once the body is read, the ASGI `receive` only returns when the client goes away (or the
    response is complete). Cancelling closes the engine connection, so the engine stops generating
    for nobody (llama.cpp and vLLM abort a request whose connection closes)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[object] | None = None
        self._watch: asyncio.Future[Message] | None = None
        self._done = False
        self.client_gone = False

    async def __aenter__(self) -> _CancelOnDisconnect:
        self._task = asyncio.current_task()
        self._watch = asyncio.ensure_future(self._receive())
        self._watch.add_done_callback(self._on_message)
        return self

    def finish(self) -> None:
        """The response is about to complete: a disconnect from here on is the normal end."""
        self._done = True

    def _on_message(self, watch: asyncio.Future[Message]) -> None:
        if self._done or watch.cancelled() or watch.exception() is not None or self._task is None:
            return
        if watch.result()["type"] == "http.disconnect":
            self.client_gone = True
            self._task.cancel()

    async def __aexit__(self, exc_type: object, exc: object, traceback: object) -> bool:
        self._done = True
        if self._watch is not None:
            self._watch.cancel()
        if exc_type is asyncio.CancelledError and self.client_gone and self._task is not None:
            self._task.uncancel()
            return True
        return False


class _Outcome:
    __slots__ = ("first_byte", "first_chunk", "note", "sent_bytes", "status", "streamed")

    def __init__(self) -> None:
        self.status = 0
        self.first_byte = 0.0
        self.first_chunk = 0.0  # a stream's first body chunk: its first token, as the client sees it
        self.streamed = False
        self.sent_bytes = 0
        self.note = ""


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > c.MAX_REQUEST_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
