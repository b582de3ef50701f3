"""The real LiteLLM proxy (PyPI `litellm[proxy]`, pinned at the gateway image's version) on 127.0.0.1 for
a test: a config (a mapping or a file) in, a base URL out, stopped cleanly on exit.

Offline, as on these machines:
- HF_HUB_OFFLINE=1 and LITELLM_LOCAL_MODEL_COST_MAP: no tokenizer or price-map downloads at start;
- one worker (two on two cores restart each other without `--timeout_worker_healthcheck`);
- the image ships the generated Prisma client; PyPI's LiteLLM does not, and generating it downloads
  engines: a stand-in (testkit/prisma_stand_in) runs LiteLLM's queries on a real PostgreSQL connection.
  `database="unreachable"`: DATABASE_URL names a port nothing listens on, so LiteLLM runs its real code
  paths for an unreachable database; `database="postgres"`: the caller's DATABASE_URL (and
  DATABASE_URL_READ_REPLICA) name real servers (testkit/postgres.py); `database="none"`: no DATABASE_URL.

Use one proxy per test module: it takes several seconds to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from node_image.agent.tests.agent_testkit.net import free_port

PRISMA_STAND_IN = Path(__file__).resolve().parent / "prisma_stand_in"
# The stand-in speaks PostgreSQL through functions/db_bootstrap/pgwire.py.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# A port nothing listens on (bound, then released): a database that refuses connections.
CLOSED_DATABASE_URL = (
    "postgresql://litellm_gateway:x@127.0.0.1:{port}/litellm?sslmode=disable&connect_timeout=2"
)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "WARNING"}


@dataclass(frozen=True)
class LiteLLMProxy:
    base_url: str
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def litellm_binary() -> str:
    return str(Path(sys.executable).with_name("litellm"))


Database = Literal["none", "unreachable", "postgres"]


def proxy_environment(env: Mapping[str, str] | None, database: Database) -> dict[str, str]:
    merged = {**os.environ, **OFFLINE_ENV, **(env or {})}
    if database == "none":
        merged.pop("DATABASE_URL", None)
        return merged
    if database == "unreachable":
        merged.setdefault("DATABASE_URL", CLOSED_DATABASE_URL.format(port=free_port()))
    elif "DATABASE_URL" not in merged:
        raise ValueError('database="postgres" needs DATABASE_URL in env')
    merged["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PRISMA_STAND_IN), str(PROJECT_ROOT), merged.get("PYTHONPATH")])
    )
    return merged


def _config_file(config: Mapping[str, Any] | Path, directory: Path) -> Path:
    if isinstance(config, Path):
        return config
    path = directory / "litellm-config.yaml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


@contextlib.contextmanager
def running_litellm(
    config: Mapping[str, Any] | Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    database: Database = "none",
    start_timeout: float = 300,
) -> Iterator[LiteLLMProxy]:
    """The proxy serving `config` on a free port until the block ends. `args` are extra CLI flags (not
    --config/--port/--num_workers, which this sets)."""
    with tempfile.TemporaryDirectory(prefix="litellm-") as tmp:
        directory = Path(tmp)
        port = free_port()
        log = directory / "litellm.log"
        command = [
            litellm_binary(), "--config", str(_config_file(config, directory)), "--port", str(port),
            "--host", "127.0.0.1", "--num_workers", "1", *args,
        ]  # fmt: skip
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                env=proxy_environment(env, database),
                cwd=directory,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proxy = LiteLLMProxy(f"http://127.0.0.1:{port}", port, log)
        try:
            _wait_until_live(proxy, process, start_timeout)
            yield proxy
        finally:
            _stop(process)


def run_litellm(
    config: Mapping[str, Any] | Path,
    *,
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    database: Database = "none",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """LiteLLM's CLI run to completion (e.g. `--skip_server_startup`: migrations only)."""
    with tempfile.TemporaryDirectory(prefix="litellm-") as tmp:
        directory = Path(tmp)
        return subprocess.run(
            [litellm_binary(), "--config", str(_config_file(config, directory)), *args],
            env=proxy_environment(env, database),
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _wait_until_live(proxy: LiteLLMProxy, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"LiteLLM exited with {process.returncode} before serving:\n{proxy.output()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{proxy.base_url}/health/liveliness", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"LiteLLM did not serve within {timeout:g} s:\n{proxy.output()[-4000:]}")


def _stop(process: subprocess.Popen[bytes], grace: float = 5) -> None:
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
