"""The image's files agree with the agent: the example config validates and shows the real
defaults, and the units give the drain the time and the signal handling it needs."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fleet_agent import constants as c
from fleet_agent.config import AgentConfig

NODE_IMAGE = Path(__file__).resolve().parents[2]
EXAMPLE = NODE_IMAGE / "config" / "agent.example.toml"


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
        fields = set(model.annotation.model_fields) - {"model_path", "port", "executable", "restart_command"}  # type: ignore[union-attr]
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
    assert service["Service.RestartPreventExitStatus"] == ["2"]  # bad config: restarting will not help


def test_host_ollama_unit_is_loopback_only_and_keeps_models_loaded() -> None:
    environment = dict(value.split("=", 1) for value in unit("ollama.service")["Service.Environment"])
    assert environment["OLLAMA_HOST"] == f"127.0.0.1:{c.DEFAULT_ENGINE_PORTS['ollama']}"
    assert environment["OLLAMA_KEEP_ALIVE"] == "-1"
