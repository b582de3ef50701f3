"""Running the real agent (Agent + its HTTP server) in a thread, on loopback, from plain tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fleet_agent.agent import Agent
from fleet_agent.config import AgentConfig, load_config
from fleet_agent.drain import DrainNotice
from fleet_agent.gpu.backend import GpuBackend
from fleet_agent.server import AgentApp, bind, make_server

from .net import free_port, wait_for

SUPPORT = Path(__file__).resolve().parent
REPO_ROOT = SUPPORT.parents[3]
# llama.cpp's own server from the xllamacpp wheel, behind llama-server's flags (the sandbox's launcher).
LLAMA_SERVER = [sys.executable, str(REPO_ROOT / "fleet" / "sandbox" / "llama_server.py")]
# The fake `vllm` is a module of this test package, so it is started through it; sys.argv[1:] is
# then "serve MODEL --host ...", as the real CLI gets it.
FAKE_VLLM = [
    sys.executable,
    "-c",
    f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
    "from node_image.agent.tests.agent_testkit.fake_vllm import main; sys.exit(main())",
    "serve",
]
API_KEY = "test-key-0123456789"

# Probe timings scaled down so fault tests finish in seconds; the benches use the defaults.
FAST_PROBES: dict[str, Any] = {
    "health_period_s": 0.2,
    "health_timeout_s": 0.5,
    "health_failure_threshold": 2,
    "model_period_s": 0.5,
    "canary_period_s": 1.0,
    "canary_timeout_s": 5.0,
    "gpu_period_s": 0.2,
    "progress_period_s": 0.2,
    "progress_window_s": 2.0,
    "wedge_restart_after_s": 1.0,
}
FAST_SUPERVISOR: dict[str, Any] = {"backoff_initial_s": 0.2, "backoff_max_s": 2.0, "stop_grace_s": 3.0}


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for agent configs: tables of scalars, lists and inline tables."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str | Path):
            return json.dumps(str(item))
        if isinstance(item, list | tuple | set | frozenset):
            return "[" + ", ".join(value(x) for x in item) + "]"
        if isinstance(item, dict):
            return "{" + ", ".join(f"{k} = {value(v)}" for k, v in item.items()) + "}"
        raise TypeError(f"no TOML for {item!r}")

    lines: list[str] = []
    for key, item in data.items():
        if not isinstance(item, dict):
            lines.append(f"{key} = {value(item)}")
    for key, item in data.items():
        if isinstance(item, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{k} = {value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def write_config(directory: Path, data: dict[str, Any]) -> Path:
    key_file = directory / "api-key"
    key_file.write_text(API_KEY + "\n")
    server = {
        "host": "127.0.0.1",
        "port": free_port(),
        "api_key_file": str(key_file),
        **data.get("server", {}),
    }
    path = directory / "agent.toml"
    path.write_text(to_toml({**data, "server": server}))
    return path


def llama_config(model: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A CPU node running real llama.cpp in spawn mode, with fast probes."""
    engine = {
        "kind": "llamacpp",
        "models": ["tiny"],
        "model_path": str(model),
        "port": free_port(),
        "executable": LLAMA_SERVER,
        "parallel": 4,
        **sections.pop("engine", {}),
    }
    return {
        "node": {
            "id": "node-test",
            "region": "test-1",
            "pool": "tiny",
            "accelerator": "cpu",
            **sections.pop("node", {}),
        },
        "engine": engine,
        "probes": {**FAST_PROBES, **sections.pop("probes", {})},
        "supervisor": {**FAST_SUPERVISOR, **sections.pop("supervisor", {})},
        **sections,
    }


def completion(max_tokens: int = 8, stream: bool = False) -> dict[str, object]:
    return {
        "model": "tiny",
        "prompt": "hello",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def generated_tokens(stream_text: str) -> int:
    """Tokens in a complete llama.cpp SSE completion stream: its last event carries the usage.
    Fails unless the stream ended as a whole stream ends: finish_reason, then [DONE]."""
    events = sse_events(stream_text)
    assert events[-1] == "[DONE]", "stream cut before [DONE]"
    final = json.loads(events[-2])
    assert final["choices"][0]["finish_reason"] == "length"
    return final["usage"]["completion_tokens"]


class AgentProcess:
    """The agent as its own process (`fleet-agent run`, as systemd runs it on a node), logging to
    `work/agent.log`; for benches, which measure it from outside."""

    def __init__(self, work: Path, config: dict[str, Any]) -> None:
        self.url = f"http://127.0.0.1:{config['server']['port']}"
        (work / "agent.toml").write_text(to_toml(config))
        self.log_path = work / "agent.log"
        self.log = self.log_path.open("w")
        # The agent's package on the path too, for an interpreter outside the project's environment.
        path = [str(SUPPORT.parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleet_agent.main", "run", "--config", str(work / "agent.toml")],
            stdout=self.log, stderr=self.log, env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
        )  # fmt: skip
        self.http = httpx.Client(base_url=self.url, timeout=5)

    def status(self) -> dict[str, Any]:
        return self.http.get("/status").json()

    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        wait_for(self.ready, timeout, "the agent to be ready")
        return self.status()

    def stop(self) -> int | None:
        """SIGTERM (a drain) and wait for the exit; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(120)
        self.log.close()
        return self.process.returncode


class RunningAgent:
    """The agent and its server on a thread of their own, driven over real HTTP."""

    def __init__(self, config_path: Path, gpu_backend: GpuBackend | None = None) -> None:
        self.config: AgentConfig = load_config(config_path, environ={})
        self.url = f"http://127.0.0.1:{self.config.server.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self._gpu_backend = gpu_backend
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._up = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.agent: Agent | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> RunningAgent:
        self._thread.start()
        wait_for(lambda: self._up.is_set() or self._error, 20, "the agent to listen")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.http.close()

    async def _main(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            agent = self.agent = Agent(self.config, gpu_backend=self._gpu_backend)
            app = AgentApp(agent)
            server = make_server(app, timeout_graceful_shutdown=5)
            sock = bind(self.config.server.host, self.config.server.port)
            await agent.start()
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            self._up.set()
            await self._stop.wait()
            server.should_exit = True
            await serving
            await app.proxy.close()
            await agent.close()
        except BaseException as exc:
            self._error = exc
            raise

    # --- driving it ------------------------------------------------------------------------------
    def call(self, function: Any, *args: Any) -> None:
        """Run `function(*args)` on the agent's loop (thread-safe)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(function, *args)

    def notice(self, notice: DrainNotice) -> None:
        assert self.agent is not None
        self.call(self.agent.request_drain, notice)

    def status(self) -> dict[str, Any]:
        return self.http.get("/status").json()

    def readyz(self) -> int:
        return self.http.get("/readyz").status_code

    def wait_state(self, state: str, timeout: float = 30) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            last.update(self.status())
            return dict(last) if last["state"] == state else None

        try:
            return wait_for(reached, timeout, f"state {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last state {last.get('state')}: {last.get('reasons')}") from None

    def wait_detail(self, check: str, text: str, timeout: float = 20) -> dict[str, Any]:
        """Wait until `check`'s detail in /status contains `text`; returns that status."""

        def seen() -> dict[str, Any] | None:
            status = self.status()
            return status if text in status["checks"][check]["detail"] else None

        return wait_for(seen, timeout, f"{check} check to say {text!r}")

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}", **extra}


STREAM_TOKENS = 3000  # a few seconds of real generation on this machine


class StreamInThread:
    """A streaming completion read on a thread; records when its first chunk and its end arrived."""

    def __init__(self, url: str, tokens: int = STREAM_TOKENS) -> None:
        self.url = url
        self.tokens = tokens
        self.first_chunk = threading.Event()
        self.done = threading.Event()
        self.text = ""
        self.status = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StreamInThread:
        self._thread.start()
        wait_for(lambda: self.first_chunk.is_set() or self.error, 20, "the stream's first chunk")
        assert self.error is None, self.error
        return self

    def _run(self) -> None:
        body = completion(max_tokens=self.tokens, stream=True)
        chunks: list[bytes] = []
        try:
            with httpx.stream(
                "POST",
                self.url + "/v1/completions",
                json=body,
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=60,
            ) as response:
                self.status = response.status_code
                for chunk in response.iter_raw():
                    chunks.append(chunk)
                    self.first_chunk.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self.text = b"".join(chunks).decode("utf-8", "replace")
            self.done.set()

    def join(self) -> None:
        assert self.done.wait(60), "stream never ended"
        self._thread.join(5)


def spot_notice(seconds_ahead: float) -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() + seconds_ahead, UTC)
    return {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
