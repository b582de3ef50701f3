"""A serverless OpenAI-compatible endpoint on loopback (what a RunPod or Modal vLLM worker serves):
/v1/completions and /v1/chat/completions answer a fixed text naming the endpoint (streamed as SSE when
asked: one text event, then one with the finish_reason, then `[DONE]`), and every call is recorded with
the key it carried."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from node_image.agent.tests.agent_testkit.asgi import Receive, Scope, Send, header, read_body, respond, stream

ANSWER = "served by the serverless fallback"


class FakeOpenAI:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await read_body(receive) or b"{}")
        if header(scope, "authorization") != f"Bearer {self.api_key}":
            await respond(
                send, 401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
            )
            return
        path = scope["path"]
        self.calls.append({"path": path, "body": body})
        usage = {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
        common = {"id": f"cmpl-{len(self.calls)}", "created": int(time.time()), "model": body.get("model")}
        if body.get("stream") and path.endswith("completions"):
            await stream(send, 200, "text/event-stream", _events(common, path.endswith("/chat/completions")))
            return
        if path.endswith("/chat/completions"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
            await respond(
                send, 200, {**common, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        elif path.endswith("/completions"):
            choice = {"index": 0, "text": ANSWER, "logprobs": None, "finish_reason": "stop"}
            await respond(
                send, 200, {**common, "object": "text_completion", "choices": [choice], "usage": usage}
            )
        else:
            await respond(send, 404, {"error": {"message": f"no route {path}"}})


async def _events(common: dict[str, Any], chat: bool) -> AsyncIterator[bytes]:
    for text, finish in ((ANSWER, None), ("", "stop")):
        if chat:
            delta = {"role": "assistant", "content": text} if text else {}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            event = {**common, "object": "chat.completion.chunk", "choices": [choice]}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            event = {**common, "object": "text_completion", "choices": [choice]}
        yield b"data: " + json.dumps(event).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
