"""The emulated serverless provider: one OpenAI-compatible endpoint on loopback (what a RunPod or Modal
vLLM worker serves) that also answers Anthropic's Messages API, so every fallback and serverless route of
the rendered gateway config has somewhere to go without the internet.

/v1/completions and /v1/chat/completions, plain and streaming (SSE, with usage when asked), and
/v1/messages answer `max_tokens` words of a fixed text naming the endpoint (finish reason "length"), as a
worker told to ignore end-of-sequence would. Every call is recorded with the path and body it carried; a
wrong key gets the provider's 401."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fleet.sandbox.asgi import Receive, Scope, Send, header, read_body, respond, stream

ANSWER = "served by the serverless fallback"
DEFAULT_MAX_TOKENS = 16


def answer_words(max_tokens: int) -> list[str]:
    """What the endpoint generates for `max_tokens`: the answer's words, cycled, one word a token."""
    words = ANSWER.split()
    return [w + " " for w in itertools.islice(itertools.cycle(words), max_tokens)]


def answer_text(max_tokens: int) -> str:
    return "".join(answer_words(max_tokens)).rstrip()


class ServerlessEndpoint:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key  # None: any key (a sandbox that stands in for several providers)
        self.calls: list[dict[str, Any]] = []

    def _authorized(self, scope: Scope) -> bool:
        if self.api_key is None:
            return True
        given = header(scope, "x-api-key") or (header(scope, "authorization") or "").removeprefix("Bearer ")
        return given == self.api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        path = scope["path"]
        if not self._authorized(scope):
            await respond(
                send, 401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
            )
            return
        if scope["method"] == "GET":
            await respond(send, 200 if path.endswith("/models") else 404, {"object": "list", "data": []})
            return
        self.calls.append({"path": path, "body": body})
        count = int(body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS)
        if path.endswith("/messages"):
            await self._anthropic(send, body, count)
        elif path.endswith("/completions"):
            chat = path.endswith("/chat/completions")
            if body.get("stream"):
                await stream(send, 200, "text/event-stream", self._events(body, count, chat))
            else:
                await respond(send, 200, self._completion(body, count, chat))
        else:
            await respond(send, 404, {"error": {"message": f"no route {path}"}})

    def _common(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        return {
            "id": f"cmpl-{len(self.calls)}",
            "created": int(time.time()),
            "model": body.get("model"),
            "object": "chat.completion" if chat else "text_completion",
        }

    @staticmethod
    def _usage(count: int) -> dict[str, int]:
        return {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}

    def _completion(self, body: dict[str, Any], count: int, chat: bool) -> dict[str, Any]:
        text = answer_text(count)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        choice |= (
            {"message": {"role": "assistant", "content": text}} if chat else {"text": text, "logprobs": None}
        )
        return {**self._common(body, chat), "choices": [choice], "usage": self._usage(count)}

    async def _events(self, body: dict[str, Any], count: int, chat: bool) -> AsyncIterator[bytes]:
        common = self._common(body, chat)
        common["object"] = "chat.completion.chunk" if chat else "text_completion"
        for word in answer_words(count):
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            choice |= {"delta": {"content": word}} if chat else {"text": word}
            yield _sse({**common, "choices": [choice]})
        last: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        last |= {"delta": {}} if chat else {"text": ""}
        yield _sse({**common, "choices": [last]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**common, "choices": [], "usage": self._usage(count)})
        yield b"data: [DONE]\n\n"

    async def _anthropic(self, send: Send, body: dict[str, Any], count: int) -> None:
        """Anthropic's Messages API, not streamed (the sandbox's load uses the OpenAI-compatible routes)."""
        message = {
            "id": f"msg_{len(self.calls)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": answer_text(count)}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": count},
        }
        await respond(send, 200, message)


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"
