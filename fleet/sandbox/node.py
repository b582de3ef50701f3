"""One GPU node of a pool, as the node image runs it, on 127.0.0.1: its instance metadata service
(emulated IMDSv2, with the instance role's credentials), its emulated GPU, and the fleet agent started as
its systemd unit does (`fleet-agent fetch-secrets`, then `run`; restarted 2 s after it exits, unless with
the bad-config status 2). The agent mounts the model store itself (the spawn mode of `[model_store]`: the
node image's separate mount unit is folded into it), warms the model and starts llama.cpp on the CPU.

Its config is the pool's rendered agent.toml with only what a sandbox must change: the node id (the
instance id), addresses and ports, file paths, llama.cpp in place of the rendered engine (vLLM and Ollama
need a GPU), and the emulated metadata service's URL."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fleet.sandbox import juicefs
from fleet.sandbox.events import Events
from fleet.sandbox.imds import EmulatedImds, spot_notice
from fleet.sandbox.net import ThreadedServer, free_port
from fleet.sandbox.plan import PoolSpec

LLAMA_SERVER = Path(__file__).resolve().parent / "llama_server.py"
MODEL_FILE = "model.gguf"
RESTART_S = 2.0  # the unit's RestartSec
BAD_CONFIG = 2  # the unit's RestartPreventExitStatus
# The agent's own environment: AWS calls go to the emulated endpoints and sign with the role IMDS serves.
DROPPED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@dataclass(frozen=True)
class NodeWiring:
    """What a node of this region reaches: addresses and credentials the sandbox made."""

    region: str
    directory: Path
    heartbeat_redis_port: int
    meta_redis_port: int
    meta_password: str
    node_secret_arn: str  # the pool's secret in moto: apiKey, redisPassword
    autoscaling_url: str
    secrets_manager_url: str
    cloudwatch_url: str  # where the agent publishes its metrics (PutMetricData): moto's CloudWatch
    elbv2_url: str  # where the agent leaves its target group (DeregisterTargets): the emulated ELBv2 API
    juicefs: str


def node_config(
    pool: PoolSpec, instance_id: str, wiring: NodeWiring, paths: NodePaths, ports: Mapping[str, int]
) -> dict[str, Any]:
    """The pool's rendered agent config, rewritten for this node."""
    config = copy.deepcopy(dict(pool.agent_config))
    config["node"] = {**config.get("node", {}), "id": instance_id}
    engine = config["engine"]
    engine.pop("args", None)  # the rendered engine's own flags
    engine.update(
        kind="llamacpp",
        mode="spawn",
        executable=[sys.executable, str(LLAMA_SERVER)],
        model_path=str(paths.mount / pool.model_dir / MODEL_FILE),
        port=ports["engine"],
    )
    config["server"] = {
        **config.get("server", {}),
        "host": "127.0.0.1",
        "port": ports["agent"],
        "api_key_file": _local(paths, config.get("server", {}).get("api_key_file", "api-key")),
    }
    config["preemption"] = {
        **config.get("preemption", {}),
        "aws_imds_url": f"http://127.0.0.1:{ports['imds']}",
    }
    heartbeat = config.get("heartbeat", {})
    if heartbeat.get("redis_url"):
        user = (
            heartbeat["redis_url"].split("//", 1)[1].split("@", 1)[0] if "@" in heartbeat["redis_url"] else ""
        )
        at = f"{user}@" if user else ""
        heartbeat.update(
            redis_url=f"redis://{at}127.0.0.1:{wiring.heartbeat_redis_port}/0",
            redis_password_file=_local(paths, heartbeat.get("redis_password_file", "redis-password")),
        )
    secrets = config.get("secrets", {})
    if secrets.get("aws_secret_id"):
        secrets["aws_secret_id"] = wiring.node_secret_arn
        secrets["files"] = {k: _local(paths, v) for k, v in secrets.get("files", {}).items()}
    store = config.get("model_store")
    if store is not None:
        for key in ("remount_command", "meta_secret"):
            store.pop(key, None)
        store.update(
            meta_url=f"redis://127.0.0.1:{wiring.meta_redis_port}/1",
            mode="spawn",
            meta_password_file=str(paths.run / "meta-password"),
            mount_point=str(paths.mount),
            cache_dir=str(paths.cache),
            juicefs=[wiring.juicefs],
            log_file=str(paths.root / "juicefs.log"),
            metrics_address=f"127.0.0.1:{ports['store_metrics']}",
        )
    config["log_level"] = "info"
    return config


def _local(paths: NodePaths, rendered: str) -> str:
    """A file the rendered config places on the node's disk, in this node's directory instead."""
    return str(paths.run / Path(rendered).name)


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def mount(self) -> Path:
        return self.root / "models"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def gpu_control(self) -> Path:
        return self.root / "gpu-control"

    @property
    def log(self) -> Path:
        return self.root / "agent.log"


class Node:
    def __init__(
        self, pool: PoolSpec, instance_id: str, wiring: NodeWiring, events: Events, *, broken: bool = False
    ) -> None:
        self.pool = pool
        self.instance_id = instance_id
        self.wiring = wiring
        self.events = events
        self.broken = broken  # a bad rollout: its engine is given a model that is not there
        self.paths = NodePaths(wiring.directory / pool.name / instance_id)
        self.ports = {k: free_port() for k in ("agent", "engine", "imds", "store_metrics")}
        self.imds = EmulatedImds(instance_id=instance_id, region=wiring.region)
        self.imds.target_lifecycle_state = "InService"
        self._imds_server = ThreadedServer(self.imds, self.ports["imds"])
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = time.time()
        self.powered = True  # False once the host is down (killed or terminated)
        self.agent_state = "booting"
        self._unit: threading.Thread | None = None
        self._restart_now = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.ports["agent"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['agent']}"

    # --- boot ---------------------------------------------------------------------------------------
    def boot(self, config_text: str) -> None:
        for directory in (self.paths.run, self.paths.mount, self.paths.cache):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(config_text)
        (self.paths.run / "meta-password").write_text(self.wiring.meta_password + "\n")
        self.paths.gpu_control.touch()
        self._imds_server.__enter__()
        self._unit = threading.Thread(target=self._unit_loop, name=f"unit-{self.instance_id}", daemon=True)
        self._unit.start()
        self.events.add("node-boot", pool=self.pool.name, node=self.instance_id, broken=self.broken)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(
            AWS_ENDPOINT_URL_AUTO_SCALING=self.wiring.autoscaling_url,
            AWS_ENDPOINT_URL_SECRETS_MANAGER=self.wiring.secrets_manager_url,
            AWS_ENDPOINT_URL_CLOUDWATCH=self.wiring.cloudwatch_url,
            AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2=self.wiring.elbv2_url,
            # The JuiceFS client (the AWS SDK for Go) reads the role's credentials from this node's IMDS.
            AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{self.ports['imds']}",
            AWS_REGION=self.wiring.region,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _unit_loop(self) -> None:
        """fleet-agent.service: ExecStartPre fetch-secrets, ExecStart run, Restart=always."""
        with self.paths.log.open("ab") as log:
            while self.powered:
                fetched = subprocess.run(
                    [sys.executable, "-m", "fleet_agent.main", "fetch-secrets", "--config",
                     str(self.paths.config)],
                    env=self._env(), stdout=log, stderr=subprocess.STDOUT, check=False,
                )  # fmt: skip
                code = fetched.returncode
                if code == 0 and self.powered:
                    self.process = subprocess.Popen(
                        [sys.executable, "-m", "fleet.sandbox.node_agent", "--config", str(self.paths.config),
                         "--gpu-control", str(self.paths.gpu_control)],
                        env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                    code = self.process.wait()
                if not self.powered:
                    return
                self.events.add("agent-exit", pool=self.pool.name, node=self.instance_id, code=code)
                if code == BAD_CONFIG:
                    return
                self._restart_now.wait(RESTART_S)
                self._restart_now.clear()

    # --- what happens to it -------------------------------------------------------------------------
    def poll_state(self, client: httpx.Client) -> str:
        """The agent's state as its /status says (or why there is none)."""
        if not self.powered:
            state = "off"
        else:
            try:
                state = str(client.get(self.url + "/status", timeout=1.0).json()["state"])
            except httpx.TimeoutException:
                state = "no answer"
            except (httpx.HTTPError, ValueError, KeyError):
                state = "down"
        if state != self.agent_state:
            self.events.add(
                "agent-state", pool=self.pool.name, node=self.instance_id, state=state, was=self.agent_state
            )
            self.agent_state = state
        return state

    def agent_pids(self) -> list[int]:
        """The agent and everything it started (the engine runs in a process group of its own)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *_descendants(self.process.pid)]

    def engine_pids(self) -> list[int]:
        if self.process is None:
            return []
        return [p for p in self.agent_pids() if p != self.process.pid]

    def power_off(self) -> None:
        """The host is gone (crash, or EC2 terminating it): every process of it at once, mount included."""
        self.powered = False
        self._restart_now.set()
        for pid in self.agent_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        juicefs.kill_mount(self.paths.mount)
        juicefs.force_unmount(self.wiring.juicefs, self.paths.mount)
        self._imds_server.__exit__(None, None, None)
        self.agent_state = "off"

    def hang_agent(self) -> None:
        """The agent stops answering (SIGSTOP): running, silent; its engine goes on."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def restart_agent(self) -> None:
        """The restart document (fleet-agent-restart.service): SIGKILL the unit's processes, start again."""
        for pid in self.agent_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        self._restart_now.set()

    def signal_engine(self, signum: signal.Signals) -> list[int]:
        pids = self.engine_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pids

    def crash_engine(self) -> list[int]:
        return self.signal_engine(signal.SIGKILL)

    def xid(self, xid: int) -> None:
        from fleet.sandbox.gpu import order_xid

        order_xid(self.paths.gpu_control, xid)

    def spot_interruption(self, seconds_ahead: float) -> None:
        """The rebalance recommendation and the interruption notice, both at once."""
        now = time.time()
        self.imds.rebalance = {"noticeTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        self.imds.spot_action = spot_notice(seconds_ahead, now)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "pool": self.pool.name,
            "agent": self.agent_state,
            "url": self.url,
            "age_s": round(time.time() - self.launched_at),
            "broken": self.broken,
            "lifecycle": self.imds.target_lifecycle_state,
        }


def _descendants(pid: int) -> list[int]:
    """Live processes below `pid` (by their parent ids in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def config_toml(config: Mapping[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(json.loads(json.dumps(config)))
