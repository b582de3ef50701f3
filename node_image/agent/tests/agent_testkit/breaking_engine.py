"""An OpenAI-compatible engine on raw HTTP/1.1 sockets that breaks its answers off the ways a dying engine
does, at a chosen point: what a real engine cannot be made to do on cue. (Real process death is tested
with real llama.cpp, SIGKILLed mid-stream.)

A request chooses its fault in its prompt (or last chat message): `fault:<how>:<after>` breaks the answer
after `<after>` whole events (streaming) or before the head (non-streaming, `after` 0) or mid-body
(non-streaming, `after` 1), where `how` is
- close:  the connection closed mid-body (FIN), as when the engine's process exits;
- reset:  the connection reset (RST, SO_LINGER 0);
- partial: half an event sent, then the connection closed;
- stall:  nothing more sent, the connection left open;
- clean:  the chunked body ended properly, without `[DONE]` (an engine bug, or a close-delimited body cut).
Any other prompt gets a whole answer. Streams are chunked (Transfer-Encoding), as vLLM's and llama.cpp's
are. /health, /v1/models answer as an engine's do; there is no /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

FAULTS = frozenset({"close", "reset", "partial", "stall", "clean"})
TOKENS = 8  # events in a whole answer


def fault_prompt(how: str, after: int) -> str:
    return f"fault:{how}:{after}"


def _fault_of(body: dict[str, Any]) -> tuple[str, int] | None:
    text = body.get("prompt") or ""
    if isinstance(text, list):
        text = " ".join(map(str, text))
    messages = body.get("messages") or []
    if messages:
        text = str(messages[-1].get("content", ""))
    for word in str(text).split():
        parts = word.split(":")
        if len(parts) == 3 and parts[0] == "fault" and parts[1] in FAULTS:
            return parts[1], int(parts[2])
    return None


class BreakingEngine:
    def __init__(self, model: str) -> None:
        self.model = model
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    @contextlib.contextmanager
    def running(self) -> Iterator[BreakingEngine]:
        self._thread.start()
        assert self._started.wait(10), "the breaking engine did not start"
        try:
            yield self
        finally:
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length) or b"{}") if length else {}
                if not await self._answer(method, path, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False when the connection is done with."""
        if method == "GET" and path == "/health":
            return await _whole(writer, 200, {})
        if method == "GET" and path == "/v1/models":
            return await _whole(
                writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            )
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            return await _whole(writer, 404, {"error": {"message": f"no route {path}"}})
        self.requests.append(body)
        chat = path.endswith("/chat/completions")
        fault = _fault_of(body)
        if body.get("stream"):
            return await self._stream(reader, writer, chat, fault)
        if fault is not None:
            how, after = fault
            if after == 0:  # before the head: the proxy still has every way to answer
                return await self._break(reader, writer, how)
            payload = json.dumps(self._completion(chat, 4)).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(payload)
            )
            writer.write(payload[: len(payload) // 2])
            return await self._break(reader, writer, how)
        return await _whole(writer, 200, self._completion(chat, int(body.get("max_tokens") or TOKENS)))

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        chat: bool,
        fault: tuple[str, int] | None,
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        events = [self._chunk(chat, i) for i in range(TOKENS)] + [self._chunk(chat, TOKENS, final=True)]
        after = TOKENS + 2 if fault is None else fault[1]
        for index, event in enumerate(events):
            if index == after:
                break
            _write_chunk(writer, b"data: " + json.dumps(event).encode() + b"\n\n")
            await writer.drain()
            await asyncio.sleep(0.005)
        else:
            _write_chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        assert fault is not None
        how = fault[0]
        if how == "partial":
            _write_chunk(writer, b'data: {"id":"cmpl-broken","choices":[{"index":0,"te')
            how = "close"
        if how == "clean":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        return await self._break(reader, writer, how)

    async def _break(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, how: str) -> bool:
        await writer.drain()
        if how == "stall":
            await reader.read()  # silent until the other side hangs up
            return False
        if how == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort() if how == "reset" else writer.close()
        return False

    def _completion(self, chat: bool, tokens: int) -> dict[str, Any]:
        usage = {"prompt_tokens": 2, "completion_tokens": tokens, "total_tokens": tokens + 2}
        common = {"id": "cmpl-whole", "created": int(time.time()), "model": self.model, "usage": usage}
        if chat:
            message = {"role": "assistant", "content": "x" * tokens}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            return {**common, "object": "chat.completion", "choices": [choice]}
        choice = {"index": 0, "text": "x" * tokens, "finish_reason": "length", "logprobs": None}
        return {**common, "object": "text_completion", "choices": [choice]}

    def _chunk(self, chat: bool, index: int, *, final: bool = False) -> dict[str, Any]:
        finish = "length" if final else None
        common = {"id": "cmpl-stream", "created": int(time.time()), "model": self.model}
        if chat:
            delta = (
                {} if final else ({"role": "assistant", "content": "x"} if index == 0 else {"content": "x"})
            )
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {**common, "object": "chat.completion.chunk", "choices": [choice]}
        choice = {"index": 0, "text": "" if final else "x", "finish_reason": finish, "logprobs": None}
        return {**common, "object": "text_completion", "choices": [choice]}


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def _whole(writer: asyncio.StreamWriter, status: int, document: dict[str, Any]) -> bool:
    payload = json.dumps(document).encode()
    reason = {200: b"OK", 404: b"Not Found"}[status]
    writer.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status, reason, len(payload), payload)
    )
    await writer.drain()
    return True
