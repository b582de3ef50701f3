"""The real LiteLLM proxy, the gateway's engine, on 127.0.0.1: a config mapping in, a base URL out, a
clean shutdown.

Started as the gateway image starts it (`litellm --config FILE --port N`), without a database (with
DATABASE_URL set it would run Prisma migrations, which download an engine) and offline: its cost map
from the package, no tokenizer downloads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from node_image.agent.tests.agent_testkit.net import free_port

STARTUP_TIMEOUT_S = 120
# Whatever the caller's environment holds, these are the proxy's: offline, DB-less, one worker.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
}
DROPPED_ENV = ("DATABASE_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "LITELLM_CONFIG_BUCKET_NAME")


@contextmanager
def litellm_proxy(config: Mapping[str, Any], env: Mapping[str, str]) -> Iterator[str]:
    """Run the proxy with `config` (the mapping the gateway's YAML holds) and `env` (what the task
    definition would pass: master key, provider keys); yields its base URL, stops it on exit."""
    executable = Path(sys.executable).with_name("litellm")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="litellm-") as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        environment = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        environment |= OFFLINE_ENV | dict(env)
        log = Path(directory) / "proxy.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [str(executable), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_alive(url, process, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_alive(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/health/liveliness", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"litellm did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
