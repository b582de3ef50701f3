"""The image's files agree with the agent: the example config validates and shows the real
defaults, the units give the drain the time and the signal handling it needs, and the one recipe
(node_image/recipe) is what both the AMI and the container image run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from fleet_agent import constants as c
from fleet_agent.config import AgentConfig

NODE_IMAGE = Path(__file__).resolve().parents[2]
EXAMPLE = NODE_IMAGE / "config" / "agent.example.toml"
RECIPE = NODE_IMAGE / "recipe"
REPO = NODE_IMAGE.parent


def unit(name: str) -> dict[str, list[str]]:
    """A unit file's settings as {"Section.Key": [values]}: systemd keys repeat (Environment=)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in (NODE_IMAGE / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def test_example_config_validates_and_shows_the_defaults() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    config = AgentConfig.model_validate(raw)
    defaults = AgentConfig.model_validate({"engine": {"kind": "vllm", "models": ["m"]}})
    for section in ("probes", "supervisor", "gpu"):
        assert getattr(config, section) == getattr(defaults, section), f"[{section}] is not the defaults"
    assert config.preemption.model_copy(update={"provider": "none"}) == defaults.preemption
    assert (config.drain.timeout_s, config.drain.reserve_s) == (
        defaults.drain.timeout_s,
        defaults.drain.reserve_s,
    )
    hb, default_hb = config.heartbeat, defaults.heartbeat
    assert (hb.period_s, hb.ttl_s, hb.key_prefix) == (
        default_hb.period_s,
        default_hb.ttl_s,
        default_hb.key_prefix,
    )
    # Every key the model knows is shown in the example, so the file doubles as the reference.
    for section, model in AgentConfig.model_fields.items():
        if section == "log_level":
            continue
        # An optional section ([model_store]) is `Model | None`.
        annotation: Any = next(
            (a for a in typing.get_args(model.annotation) if a is not type(None)), model.annotation
        )
        fields = set(annotation.model_fields) - {"model_path", "port", "executable", "restart_command"}
        text = EXAMPLE.read_text()
        missing = [field for field in fields if f"{field} =" not in text]
        assert not missing, f"[{section}] keys not in the example: {missing}"


def test_agent_unit_lets_the_drain_finish() -> None:
    service = unit("fleet-agent.service")
    # Only the agent gets SIGTERM: the engine must keep serving in-flight requests until the drain stops it.
    assert service["Service.KillMode"] == ["mixed"]
    assert service["Service.KillSignal"] == ["SIGTERM"]
    assert float(service["Service.TimeoutStopSec"][0]) > c.DRAIN_TIMEOUT_S + c.ENGINE_STOP_GRACE_S
    assert service["Service.ExecStart"] == [
        "/opt/fleet-agent/bin/fleet-agent run --config /etc/fleet-agent/agent.toml"
    ]
    # The secret files are written (into the tmpfs RuntimeDirectory) before the config that names them
    # is checked.
    assert service["Service.ExecStartPre"] == [
        "/opt/fleet-agent/bin/fleet-agent fetch-secrets --config /etc/fleet-agent/agent.toml",
        "/opt/fleet-agent/bin/fleet-agent check-config --config /etc/fleet-agent/agent.toml",
    ]
    assert service["Service.RuntimeDirectory"] == ["fleet-agent"]
    assert service["Service.RuntimeDirectoryMode"] == ["0700"]
    assert "fleet-model-cache.service" in service["Unit.After"][0].split()
    assert service["Service.RestartPreventExitStatus"] == ["2"]  # bad config: restarting will not help


def test_the_model_store_unit_mounts_before_the_agent_and_comes_back() -> None:
    store = unit(c.STORE_UNIT)
    assert store["Service.ExecStart"] == [
        "/opt/fleet-agent/bin/fleet-agent mount-store --config /etc/fleet-agent/agent.toml"
    ]
    assert store["Service.Restart"] == ["on-failure"]  # a client that dies is started again
    assert store["Service.RestartPreventExitStatus"] == ["2"]
    assert {"fleet-agent.service", "ollama.service"} <= set(store["Unit.Before"][0].split())
    assert "fleet-model-cache.service" in store["Unit.After"][0].split()  # its cache on the NVMe first
    agent = unit("fleet-agent.service")
    assert c.STORE_UNIT in agent["Unit.Wants"][0].split() and c.STORE_UNIT in agent["Unit.After"][0].split()
    # The agent's remount is what polkit lets its user do, and the image installs and enables both.
    rule = (NODE_IMAGE / "systemd" / "50-fleet-agent-model-store.rules").read_text()
    assert c.STORE_REMOUNT_COMMAND == ("systemctl", "restart", c.STORE_UNIT)
    assert (
        f'action.lookup("unit") == "{c.STORE_UNIT}"' in rule and 'action.lookup("verb") == "restart"' in rule
    )
    units = (RECIPE / "steps" / "units.sh").read_text()
    enabled = re.search(r"^enabled=\((.*)\)$", units, re.MULTILINE)
    assert enabled is not None and c.STORE_UNIT in enabled.group(1).split()
    assert "50-fleet-agent-model-store.rules" in units
    assert "juicefs-cache" in (RECIPE / "files" / "fleet-model-cache").read_text()


def test_host_ollama_unit_is_loopback_only_and_keeps_models_loaded() -> None:
    environment = dict(value.split("=", 1) for value in unit("ollama.service")["Service.Environment"])
    assert environment["OLLAMA_HOST"] == f"127.0.0.1:{c.DEFAULT_ENGINE_PORTS['ollama']}"
    assert environment["OLLAMA_KEEP_ALIVE"] == "-1"


def run_recipe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """provision.sh with STAGING laid out as the bundle and the Dockerfile lay it out."""
    staging = tmp_path / "staging"
    if not staging.exists():
        shutil.copytree(RECIPE, staging / "recipe")
    return subprocess.run(
        ["bash", str(staging / "recipe" / "provision.sh")],
        env={"PATH": os.environ["PATH"], "STAGING": str(staging), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("step", ["nvidia", "units"])
def test_the_container_target_skips_the_hosts_steps(tmp_path: Path, step: str) -> None:
    done = run_recipe(tmp_path, TARGET="container", ENGINE="vllm", STEP=step)
    assert done.returncode == 0, done.stderr
    assert f"step {step}" in done.stdout and "skipped for a container" in done.stdout


def test_the_recipe_refuses_llamacpp_and_unknown_targets(tmp_path: Path) -> None:
    done = run_recipe(tmp_path, TARGET="ami", ENGINE="llamacpp")
    assert done.returncode == 2
    assert "llama.cpp publishes no Linux CUDA build" in done.stderr
    assert run_recipe(tmp_path, TARGET="vm", ENGINE="vllm").returncode == 2


def test_every_step_the_recipe_names_exists() -> None:
    text = (RECIPE / "provision.sh").read_text()
    steps = re.search(r"^STEPS=\((.*)\)$", text, re.MULTILINE)
    assert steps is not None
    names = steps.group(1).split()
    assert names[0] == "base" and names[-1] == "validate"
    assert sorted(p.stem for p in (RECIPE / "steps").glob("*.sh")) == sorted(names)


def test_the_dockerfile_runs_the_recipe_with_what_it_needs() -> None:
    dockerfile = (NODE_IMAGE / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    # The same staging layout the program's bundle has: recipe, units, config, the agent and its lock.
    for needed in (
        "node_image/recipe",
        "node_image/systemd",
        "node_image/config",
        "node_image/agent/pyproject.toml",
        "node_image/agent/requirements.lock.txt",
        "node_image/agent/fleet_agent",
    ):
        assert needed in sources, needed
    assert re.search(r"TARGET=container .*provision\.sh", dockerfile, re.DOTALL)
    assert re.search(r"^FROM \S+@sha256:[0-9a-f]{64}$", dockerfile, re.MULTILINE)  # pinned base
    assert 'ENTRYPOINT ["/opt/fleet-agent/bin/fleet-agent"]' in dockerfile


def test_the_agent_lock_matches_uv_lock() -> None:
    """The image installs the agent's dependencies from this hash-locked export; it must be current."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH (it runs the whole test suite)")
    lock = NODE_IMAGE / "agent" / "requirements.lock.txt"
    header = lock.read_text().splitlines()[1].removeprefix("#    ").split()
    assert header[:2] == ["uv", "export"]
    exported = subprocess.run(
        [uv, *header[1:-2]], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    body = [line for line in lock.read_text().splitlines() if not line.startswith("#")]
    assert body == [line for line in exported.splitlines() if not line.startswith("#")], (
        "node_image/agent/requirements.lock.txt is stale: run the command in its header"
    )
