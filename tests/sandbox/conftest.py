"""One dev sandbox for the module (`fleet sandbox up` as a user runs it, in a directory of its own), and
`down` after it whatever happened. Starting one takes about a minute on two busy cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from fleet.sandbox.juicefs import fuse_problem

PROJECT_DIR = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 600
# Two nodes, so a drill on one leaves the pool serving; the controller's shortest boot grace (its config's
# minimum), so a node-kill need not wait ten minutes for the rendered default.
UP_ARGS = ("--nodes", "2", "--set", "controller.bootGraceSeconds=60")
ROUTE, POOL_DEPLOYMENT = "llama-3.1-8b", "llama-3.1-8b/pool/llama-8b"


@dataclass(frozen=True)
class Sandbox:
    dir: Path
    base_url: str
    api_key: str
    up_output: str

    def fleet(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return fleet("sandbox", *args, "--dir", str(self.dir), timeout=timeout)

    def status(self) -> dict[str, Any]:
        done = self.fleet("status", "--json", timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_pool_serves(self, deadline_s: float = 300) -> None:
        """Until the gateway routes the route's requests to its own pool: after a drill, LiteLLM may hold
        the pool in cooldown (its rendered cooldown_time) and send them to the fallback meanwhile."""
        client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key)
        deadline = time.monotonic() + deadline_s
        while True:
            answer = client.chat.completions.with_raw_response.create(
                model=ROUTE, messages=[{"role": "user", "content": "ping"}], max_tokens=1
            )
            if answer.headers["x-litellm-model-id"] == POOL_DEPLOYMENT:
                return
            assert time.monotonic() < deadline, (
                f"the gateway still routes {ROUTE} elsewhere after {deadline_s} s"
            )
            time.sleep(1)


def fleet(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The `fleet` command as a user runs it (its own process, from the project directory)."""
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import run; run()", *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def running_sandbox(tmp_path_factory: pytest.TempPathFactory, stack: str, *args: str) -> Iterator[Sandbox]:
    problem = fuse_problem()
    if problem:
        pytest.skip(problem)
    directory = tmp_path_factory.mktemp(f"sandbox-{stack}")
    up = fleet("sandbox", "up", "--stack", stack, *args, "--dir", str(directory), timeout=UP_TIMEOUT_S)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((directory / "state.json").read_text())
        yield Sandbox(directory, state["baseUrl"], state["apiKey"], up.stdout)
    finally:
        fleet("sandbox", "down", "--dir", str(directory), timeout=180)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from running_sandbox(tmp_path_factory, "dev", *UP_ARGS)


@pytest.fixture(scope="module")
def prod_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """prod (a primary and a standby region) with one node a pool: the controller raises a pool to its
    minReadyReplicas."""
    yield from running_sandbox(tmp_path_factory, "prod", "--nodes", "1")
