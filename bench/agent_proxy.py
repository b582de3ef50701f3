"""What the agent's proxy costs: the same completion requests sent straight to the engine and
through the agent, in the same run, at concurrency 1, 8 and 32 (p50, p99, requests/s).

    uv run python bench/agent_proxy.py [--seconds 4] [--rounds 2] [--max-tokens 16]

The engine is real llama.cpp (xllamacpp) serving a tiny random-weight model, so each request is a
few milliseconds of real generation and the proxy's share is as large as it will ever be. The agent
runs as its own process (`fleet-agent run`, attach mode, access log on), as on a node. Each level
runs direct and through the agent in ABBA order over `--rounds` rounds, so drift falls on both.
A lean asyncio HTTP/1.1 client with keep-alive keeps the load generator's own cost small.

Prints a table, then a JSON object as the last line. Goals: p50 adds <= 1 ms at concurrency 1;
throughput through the agent >= 90% of direct at concurrency 32.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node_image.agent.tests.agent_testkit.harness import LLAMA_SERVER, AgentProcess  # noqa: E402
from node_image.agent.tests.agent_testkit.net import free_port  # noqa: E402
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama  # noqa: E402

API_KEY = "bench-key"
LEVELS = (1, 8, 32)


class Connection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for JSON request/response."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(part[:-2] for part in parts)
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
            self.writer = None
        return status, body


def build_request(port: int, max_tokens: int, with_key: bool) -> bytes:
    body = json.dumps(
        {"model": "tiny", "prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True}
    ).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if with_key:
        head += f"Authorization: Bearer {API_KEY}\r\n"
    return head.encode() + b"\r\n" + body


async def load(port: int, raw: bytes, concurrency: int, seconds: float) -> tuple[list[float], int]:
    """Closed loop: `concurrency` clients, each sending its next request when the last returns."""
    latencies: list[float] = []
    failures = 0
    warm_until = time.perf_counter() + min(1.0, seconds / 4)
    stop_at = warm_until + seconds

    async def client() -> None:
        nonlocal failures
        connection = Connection(port)
        while (now := time.perf_counter()) < stop_at:
            status, _ = await connection.request(raw)
            if now >= warm_until:
                latencies.append(time.perf_counter() - now)
                failures += status != 200

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, failures


def summarize(latencies: list[float], seconds: float, failures: int) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "rps": round(len(ordered) / seconds, 1),
        "requests": len(ordered),
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="measured seconds per level, target and round"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=8, help="llama.cpp slots")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agent-proxy-bench-"))
    model = write_tiny_llama(work / "tiny.gguf")
    engine_port, agent_port = free_port(), free_port()
    engine = subprocess.Popen(
        [*LLAMA_SERVER, "--model", str(model), "--alias", "tiny", "--port", str(engine_port),
         "--parallel", str(args.parallel), "--threads", "1", "--metrics"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    (work / "key").write_text(API_KEY)
    config = {
        "node": {"id": "bench", "accelerator": "cpu"},
        "engine": {"kind": "llamacpp", "mode": "attach", "models": ["tiny"], "model_path": str(model),
                   "port": engine_port},
        "server": {"host": "127.0.0.1", "port": agent_port, "api_key_file": str(work / "key")},
    }  # fmt: skip
    agent = AgentProcess(work, config)
    try:
        agent.wait_ready(60)
        targets = {
            "direct": (engine_port, build_request(engine_port, args.max_tokens, with_key=False)),
            "agent": (agent_port, build_request(agent_port, args.max_tokens, with_key=True)),
        }
        results: dict[int, dict[str, dict[str, float]]] = {}
        print(f"{'conc':>4} {'target':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'n':>6}")
        for level in LEVELS:
            samples: dict[str, list[float]] = {"direct": [], "agent": []}
            fails = dict.fromkeys(samples, 0)
            order = ["direct", "agent", "agent", "direct"] * args.rounds
            for name in order[: 2 * args.rounds]:
                port, raw = targets[name]
                latencies, failed = asyncio.run(load(port, raw, level, args.seconds))
                samples[name] += latencies
                fails[name] += failed
            results[level] = {}
            for name, latencies in samples.items():
                summary = summarize(latencies, args.seconds * args.rounds, fails[name])
                results[level][name] = summary
                print(f"{level:>4} {name:>7} {summary['p50_ms']:>8.3f} {summary['p99_ms']:>8.3f} "
                      f"{summary['rps']:>8.1f} {summary['requests']:>6}")  # fmt: skip
    finally:
        agent.stop()
        os.killpg(engine.pid, signal.SIGTERM)
        engine.wait(30)

    one, top = results[1], results[LEVELS[-1]]
    print(
        json.dumps(
            {
                "p50_added_ms": round(one["agent"]["p50_ms"] - one["direct"]["p50_ms"], 3),
                "throughput_ratio": round(top["agent"]["rps"] / top["direct"]["rps"], 3),
                "levels": {str(level): results[level] for level in LEVELS},
                "max_tokens": args.max_tokens,
                "seconds_per_target": args.seconds * args.rounds,
                "goals": {"p50_added_ms": 1.0, "throughput_ratio": 0.9},
            }
        )
    )


if __name__ == "__main__":
    main()
