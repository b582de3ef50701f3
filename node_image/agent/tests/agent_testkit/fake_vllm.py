"""A fake `vllm serve`, run as the engine process in spawn mode. It takes vLLM's flags, listens
only once its "weights are loaded" (connection refused until then, as vLLM does), and answers
vLLM's paths: /health (200; 503 once the engine core has died), /v1/models, /v1/completions
(JSON or SSE), and /metrics with vLLM's metric names.

Two test-only paths play faults no real request can cause: POST /fake/engine-dead makes /health
answer 503; POST /fake/stall leaves requests waiting with no token ever produced, health still 200.

As vLLM's EngineCore, a child process does the GPU's work: with --gpu-hold-mib (on a machine with a GPU
and PyTorch) it holds that much GPU memory, as vLLM's does; GET /fake/engine-core names its PID, for a
fake NVML to list. /metrics reports `vllm:cache_config_info` with --num-gpu-blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from .asgi import Receive, Scope, Send, read_body, respond, stream

# The EngineCore stand-in: holds GPU memory when asked, and ends with its parent.
ENGINE_CORE = """
import os, sys, time
parent, hold_mib = os.getppid(), int(sys.argv[1])
if hold_mib:
    import torch
    held = torch.empty(hold_mib * 2**20, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
print("ready", flush=True)
while os.getppid() == parent:
    time.sleep(0.5)
"""


class FakeVllm:
    def __init__(self, model: str, engine_core_pid: int = 0, num_gpu_blocks: int = 2048) -> None:
        self.model = model
        self.engine_core_pid = engine_core_pid
        self.num_gpu_blocks = num_gpu_blocks
        self.dead = False
        self.stalled = False
        self.running = 0
        self.waiting = 0
        self.generated = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body: dict[str, Any] = {}
        if method == "POST":
            raw = await read_body(receive)
            body = json.loads(raw) if raw else {}
        if path in ("/health", "/ping"):
            await respond(send, 503 if self.dead else 200, b"", "application/json")
        elif path == "/v1/models":
            await respond(
                send,
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.model,
                            "object": "model",
                            "owned_by": "vllm",
                            "root": self.model,
                            "max_model_len": 4096,
                        }
                    ],
                },
            )
        elif path == "/v1/completions" and method == "POST":
            await self._complete(send, body)
        elif path == "/metrics":
            await respond(send, 200, self._metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/fake/engine-core":
            await respond(send, 200, {"pid": self.engine_core_pid})
        elif path == "/fake/engine-dead":
            self.dead = True
            await respond(send, 200, {"dead": True})
        elif path == "/fake/stall":
            self.stalled = True
            await respond(send, 200, {"stalled": True})
        else:
            await respond(send, 404, {"detail": "Not Found"})

    async def _complete(self, send: Send, body: dict[str, Any]) -> None:
        if self.dead:
            await respond(
                send,
                500,
                {
                    "object": "error",
                    "message": "EngineCore encountered an issue.",
                    "type": "InternalServerError",
                    "code": 500,
                },
            )
            return
        if body.get("model") != self.model:
            await respond(
                send,
                404,
                {
                    "object": "error",
                    "message": f"The model `{body.get('model')}` does not exist.",
                    "type": "NotFoundError",
                    "code": 404,
                },
            )
            return
        count = int(body.get("max_tokens") or 16)
        if self.stalled:
            self.waiting += 1
            await asyncio.Event().wait()  # never scheduled: no token, ever
        self.running += 1
        created = int(time.time())
        try:
            if not body.get("stream"):
                self.generated += count
                await respond(
                    send,
                    200,
                    {
                        "id": "cmpl-1",
                        "object": "text_completion",
                        "created": created,
                        "model": self.model,
                        "choices": [{"index": 0, "text": "x" * count, "finish_reason": "length"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1},
                    },
                )
                return

            async def events() -> AsyncIterator[bytes]:
                for _ in range(count):
                    self.generated += 1
                    chunk = {
                        "id": "cmpl-1",
                        "object": "text_completion",
                        "created": created,
                        "model": self.model,
                        "choices": [{"index": 0, "text": "x", "finish_reason": None}],
                    }
                    yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                    await asyncio.sleep(0.01)
                yield b"data: [DONE]\n\n"

            await stream(send, 200, "text/event-stream; charset=utf-8", events())
        finally:
            self.running -= 1

    def _metrics(self) -> str:
        labels = f'engine="0",model_name="{self.model}"'
        return "\n".join(
            [
                "# HELP vllm:num_requests_running Number of requests in model execution batches.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{{{labels}}} {float(self.running)}",
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{{{labels}}} {float(self.waiting)}",
                "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f"vllm:kv_cache_usage_perc{{{labels}}} 0.0",
                "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
                "# TYPE vllm:generation_tokens_total counter",
                f"vllm:generation_tokens_total{{{labels}}} {float(self.generated)}",
                "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
                "# TYPE vllm:cache_config_info gauge",
                f'vllm:cache_config_info{{block_size="16",cache_dtype="auto",engine="0",'
                f'gpu_memory_utilization="0.9",num_cpu_blocks="None",num_gpu_blocks="{self.num_gpu_blocks}"}} 1.0',
                "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
                "# TYPE vllm:num_preemptions_total counter",
                f"vllm:num_preemptions_total{{{labels}}} 0.0",
                "",
            ]
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="vllm")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name")
    serve.add_argument("--load-seconds", type=float, default=0.3)  # a test's stand-in for weight loading
    serve.add_argument("--gpu-hold-mib", type=int, default=0)
    serve.add_argument("--num-gpu-blocks", type=int, default=2048)
    args = parser.parse_args()
    core = subprocess.Popen(
        [sys.executable, "-c", ENGINE_CORE, str(args.gpu_hold_mib)], stdout=subprocess.PIPE, text=True
    )
    assert core.stdout is not None
    if core.stdout.readline().strip() != "ready":
        return 1
    time.sleep(args.load_seconds)
    app = FakeVllm(args.served_model_name or args.model, core.pid, args.num_gpu_blocks)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        core.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
