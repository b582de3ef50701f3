"""A fake Ollama server speaking Ollama's documented API: `GET /` before any model is loaded,
/api/tags (on disk), /api/ps (loaded, with size and size_vram), /api/generate (a request without a
prompt only loads the model), /api/chat and /api/pull as NDJSON streams (a pull's error arrives as
a line under HTTP 200), and the OpenAI-compatible /v1/chat/completions with SSE streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .asgi import Receive, Scope, Send, read_body, respond, stream

MODEL_SIZE = 2_019_393_189


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _full(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


@dataclass
class FakeOllama:
    on_disk: set[str] = field(default_factory=lambda: {"llama3.2:3b"})
    gpu: bool = True  # False: models load with size_vram 0, as when Ollama fell back to CPU
    pull_error: str | None = None  # an error line in the middle of /api/pull
    loaded: dict[str, int] = field(default_factory=dict)  # name -> size_vram
    token_delay_s: float = 0.0
    requests: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        body: dict[str, Any] = {}
        if method == "POST":
            raw = await read_body(receive)
            body = json.loads(raw) if raw else {}
        if (method, path) == ("GET", "/"):
            await respond(send, 200, "Ollama is running")
        elif (method, path) == ("GET", "/api/version"):
            await respond(send, 200, {"version": "0.12.6"})
        elif (method, path) == ("GET", "/api/tags"):
            await respond(send, 200, {"models": [self._tag(name) for name in sorted(self.on_disk)]})
        elif (method, path) == ("GET", "/api/ps"):
            await respond(send, 200, {"models": [self._ps(name, vram) for name, vram in self.loaded.items()]})
        elif (method, path) == ("POST", "/api/generate"):
            await self._generate(send, body)
        elif (method, path) == ("POST", "/api/chat"):
            await self._chat(send, body)
        elif (method, path) == ("POST", "/api/pull"):
            await stream(send, 200, "application/x-ndjson", self._pull(_full(body["model"])))
        elif (method, path) == ("POST", "/v1/chat/completions"):
            await self._openai_chat(send, body)
        else:
            await respond(send, 404, "404 page not found")

    def _tag(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": _now(),
            "size": MODEL_SIZE,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {
                "format": "gguf",
                "family": "llama",
                "parameter_size": "3.2B",
                "quantization_level": "Q4_K_M",
            },
        }

    def _ps(self, name: str, size_vram: int) -> dict[str, Any]:
        return {
            **self._tag(name),
            "expires_at": "2318-08-16T10:00:00Z",
            "size_vram": size_vram,
            "context_length": 4096,
        }

    def _missing(self, model: str) -> dict[str, str]:
        return {"error": f'model "{model}" not found, try pulling it first'}

    async def _generate(self, send: Send, body: dict[str, Any]) -> None:
        model = _full(body.get("model", ""))
        if model not in self.on_disk:
            await respond(send, 404, self._missing(body.get("model", "")))
            return
        if body.get("keep_alive") == 0:
            self.loaded.pop(model, None)
            await respond(
                send,
                200,
                {"model": model, "created_at": _now(), "response": "", "done": True, "done_reason": "unload"},
            )
            return
        self.loaded[model] = MODEL_SIZE if self.gpu else 0
        if not body.get("prompt"):
            await respond(
                send,
                200,
                {"model": model, "created_at": _now(), "response": "", "done": True, "done_reason": "load"},
            )
            return
        count = int((body.get("options") or {}).get("num_predict", 4))
        if body.get("stream") is False:
            await respond(
                send,
                200,
                {
                    "model": model,
                    "created_at": _now(),
                    "response": "pong"[:count],
                    "done": True,
                    "done_reason": "length",
                    "eval_count": count,
                },
            )
            return

        async def lines() -> AsyncIterator[bytes]:
            for index in range(count):
                await asyncio.sleep(self.token_delay_s)
                yield (
                    json.dumps(
                        {"model": model, "created_at": _now(), "response": f"t{index} ", "done": False}
                    ).encode()
                    + b"\n"
                )
            yield (
                json.dumps(
                    {
                        "model": model,
                        "created_at": _now(),
                        "response": "",
                        "done": True,
                        "done_reason": "length",
                        "eval_count": count,
                    }
                ).encode()
                + b"\n"
            )

        await stream(send, 200, "application/x-ndjson", lines())

    async def _chat(self, send: Send, body: dict[str, Any]) -> None:
        model = _full(body.get("model", ""))
        if model not in self.on_disk:
            await respond(send, 404, self._missing(body.get("model", "")))
            return
        self.loaded[model] = MODEL_SIZE if self.gpu else 0
        count = int((body.get("options") or {}).get("num_predict", 4))

        async def lines() -> AsyncIterator[bytes]:
            for index in range(count):
                await asyncio.sleep(self.token_delay_s)
                message = {"role": "assistant", "content": f"t{index} "}
                yield (
                    json.dumps(
                        {"model": model, "created_at": _now(), "message": message, "done": False}
                    ).encode()
                    + b"\n"
                )
            final = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "length",
                "eval_count": count,
            }
            yield json.dumps(final).encode() + b"\n"

        await stream(send, 200, "application/x-ndjson", lines())

    async def _pull(self, model: str) -> AsyncIterator[bytes]:
        yield b'{"status":"pulling manifest"}\n'
        if self.pull_error is not None:
            yield json.dumps({"error": self.pull_error}).encode() + b"\n"
            return
        digest = "sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
        yield (
            json.dumps(
                {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": MODEL_SIZE,
                    "completed": MODEL_SIZE,
                }
            ).encode()
            + b"\n"
        )
        yield b'{"status":"verifying sha256 digest"}\n'
        yield b'{"status":"writing manifest"}\n'
        self.on_disk.add(model)
        yield b'{"status":"success"}\n'

    async def _openai_chat(self, send: Send, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if _full(model) not in self.on_disk:
            await respond(
                send,
                404,
                {
                    "error": {
                        "message": f'model "{model}" not found, try pulling it first',
                        "type": "api_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        count = int(body.get("max_tokens", 4))
        created = int(time.time())
        if not body.get("stream"):
            await respond(
                send,
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "x" * count},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1},
                },
            )
            return

        async def events() -> AsyncIterator[bytes]:
            for index in range(count):
                await asyncio.sleep(self.token_delay_s)
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": f"t{index} "},
                            "finish_reason": None,
                        }
                    ],
                }
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        await stream(send, 200, "text/event-stream", events())
