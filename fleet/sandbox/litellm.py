"""The real LiteLLM proxy (PyPI `litellm[proxy]`, pinned at the gateway image's version) on 127.0.0.1: a
config file in, a base URL out.

Offline, as on these machines: HF_HUB_OFFLINE=1 and LITELLM_LOCAL_MODEL_COST_MAP (no tokenizer or
price-map downloads at start), one worker (two on two cores restart each other without
`--timeout_worker_healthcheck`). It takes several seconds to start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "WARNING"}
LIVENESS_PATH = "/health/liveliness"


def litellm_binary() -> str:
    return str(Path(sys.executable).with_name("litellm"))


def start_litellm(
    config: Path, port: int, env: Mapping[str, str], log: Path, cwd: Path, args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """The proxy serving `config` on 127.0.0.1:`port`, in a process group of its own (its workers too),
    logging to `log`. `args` are extra CLI flags (not --config/--port/--host/--num_workers)."""
    command = [
        litellm_binary(), "--config", str(config), "--port", str(port), "--host", "127.0.0.1",
        "--num_workers", "1", *args,
    ]  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until_live(base_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"LiteLLM exited with {process.returncode} before serving:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(base_url + LIVENESS_PATH, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"LiteLLM did not serve within {timeout:g} s:\n{_tail(log)}")


def stop_litellm(process: subprocess.Popen[bytes], grace: float = 5) -> None:
    """SIGTERM to the proxy's process group (its workers too), SIGKILL after `grace` s: a proxy whose
    database is unreachable may hold its shutdown for spend logs it can never write."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""
