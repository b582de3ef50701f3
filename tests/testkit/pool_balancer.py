"""A GPU pool's internal load balancer, which cannot run here: it forwards to the pool's node (a real
OpenAI-compatible server), or answers as an ALB does when it cannot: 503 with no healthy target to fail
open to, or, failing open to nodes whose engine has no model loaded, their 404."""

from __future__ import annotations

from typing import Any

import httpx

from node_image.agent.tests.agent_testkit.asgi import Receive, Scope, Send, read_body, respond

FORWARD = "forward"
ALB_503 = "<html><body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"


class PoolLoadBalancer:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        # FORWARD, or the status every request gets (503: no healthy target; 404: unready nodes).
        self.mode: str | int = FORWARD
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.requests += 1
        if self.mode == 503:
            await respond(send, 503, ALB_503, "text/html")
            return
        if self.mode == 404:
            await respond(send, 404, {"error": {"message": "model not found", "type": "not_found_error"}})
            return
        headers: dict[str, Any] = {
            k.decode(): v.decode()
            for k, v in scope["headers"]
            if k.lower() in (b"content-type", b"authorization")
        }
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.request(
                scope["method"], self.upstream + scope["path"], content=body, headers=headers
            )
        await respond(send, answer.status_code, answer.content, answer.headers.get("content-type"))
