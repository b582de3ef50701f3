"""Config: one model from a TOML file plus FLEET_AGENT__* overrides; bad input is one line per
bad key and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet_agent.config import ConfigError, load_config

from .agent_testkit.harness import to_toml

KEY_ENV = {"FLEET_AGENT_API_KEY": "k-123"}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(data))
    return path


def errors(tmp_path: Path, data: dict, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data), KEY_ENV if environ is None else environ)
    return caught.value.lines


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"engine": {"kind": "vllm", "models": ["m"]}}), KEY_ENV)
    assert config.engine.mode == "spawn"
    assert config.engine.base_url == "http://127.0.0.1:8000"
    assert config.node.accelerator == "gpu"
    assert config.server.port == 8080
    assert config.probes.health_period_s == 2.0
    assert config.gpu.ignored_xids == frozenset({13, 31, 43, 45, 68, 109})
    assert [key.get_secret_value() for key in config.server.api_keys] == ["k-123"]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"engine": {"kind": "ollama", "models": ["a"]}, "node": {"region": "eu"}})
    config = load_config(
        path,
        {
            **KEY_ENV,
            "FLEET_AGENT__ENGINE__MODELS": '["llama3.2:3b", "qwen3:8b"]',
            "FLEET_AGENT__ENGINE__MODE": "attach",
            "FLEET_AGENT__PROBES__CANARY_PERIOD_S": "12.5",
            "FLEET_AGENT__NODE__ID": "gpu-17",
        },
    )
    assert config.engine.models == ["llama3.2:3b", "qwen3:8b"]
    assert config.engine.mode == "attach"
    assert config.probes.canary_period_s == 12.5
    assert (config.node.id, config.node.region) == ("gpu-17", "eu")


def test_api_key_file_holds_one_key_per_line_and_is_never_shown(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-11\nnew-key\nold-key\n")
    config = load_config(
        write(tmp_path, {"engine": {"kind": "vllm", "models": ["m"]}, "server": {"api_key_file": str(keys)}}),
        {},
    )
    assert [key.get_secret_value() for key in config.server.api_keys] == ["new-key", "old-key"]
    assert "new-key" not in repr(config) and "new-key" not in str(config.server.api_keys)


def test_every_bad_key_is_one_line_naming_it(tmp_path: Path) -> None:
    lines = errors(
        tmp_path,
        {
            "engine": {"kind": "vllm", "models": ["m"], "mode": "spwan"},
            "probes": {"health_period_s": 0, "bogus": 1},
            "drain": {"hooks": [{"kind": "webhook", "url": "not a url"}]},
            "preemption": {"provider": "azure"},
        },
    )
    assert lines == [
        "config: engine.mode: must be one of 'spawn' or 'attach' (got 'spwan')",
        "config: probes.health_period_s: Input should be greater than 0 (got 0)",
        "config: probes.bogus: unknown key",
        "config: drain.hooks[0].url: Input should be a valid URL, relative URL without a base "
        "(got 'not a url')",
        "config: preemption.provider: must be one of 'none', 'aws' or 'gce' (got 'azure')",
    ]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({}, "config: engine: required"),
        (
            {"engine": {"kind": "llamacpp", "models": ["m"]}},
            "config: engine.model_path: required when engine.kind is 'llamacpp' (path to a .gguf file)",
        ),
        (
            {"engine": {"kind": "vllm", "models": []}},
            "config: engine.models: List should have at least 1 item after validation, not 0",
        ),
        (
            {"engine": {"kind": "vllm", "models": ["a", "b"]}},
            "config: engine.models: vllm serves exactly one model per engine",
        ),
        (
            {"engine": {"kind": "ollama", "models": ["a"], "mode": "attach", "executable": ["x"]}},
            "config: engine.executable: only used when engine.mode is 'spawn'",
        ),
        (
            {"engine": {"kind": "vllm", "models": ["a"]}, "heartbeat": {"redis_url": "http://x"}},
            # No echo of the value: a Redis URL may carry a password.
            "config: heartbeat.redis_url: must start with redis://, rediss:// or unix://",
        ),
        (
            {"engine": {"kind": "vllm", "models": ["a"]}, "heartbeat": {"period_s": 10, "ttl_s": 5}},
            "config: heartbeat.ttl_s: must be greater than period_s, or every record expires between beats",
        ),
    ],
)
def test_rules_across_keys_name_the_key(tmp_path: Path, data: dict, line: str) -> None:
    assert line in errors(tmp_path, data)


def test_missing_api_key_is_refused(tmp_path: Path) -> None:
    assert errors(tmp_path, {"engine": {"kind": "vllm", "models": ["m"]}}, environ={}) == [
        "config: server.api_key_file: required (or set FLEET_AGENT_API_KEY); the proxy never runs open"
    ]


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", KEY_ENV)
    assert caught.value.lines == [f"config: {tmp_path / 'absent.toml'}: no such file"]
    broken = tmp_path / "broken.toml"
    broken.write_text("[engine\nkind=")
    with pytest.raises(ConfigError) as caught:
        load_config(broken, KEY_ENV)
    assert caught.value.lines[0].startswith(f"config: {broken}: not valid TOML (")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet_agent.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_cli_bad_config_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, {"engine": {"kind": "tgi", "models": ["m"]}})
    result = run_cli("run", "--config", str(path), env=KEY_ENV)
    assert result.returncode == 2
    assert result.stderr == (
        "fleet-agent: config: engine.kind: must be one of 'vllm', 'ollama' or 'llamacpp' (got 'tgi')\n"
    )
    assert result.stdout == ""


def test_cli_check_config_describes_what_it_sets_up(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "engine": {"kind": "ollama", "models": ["llama3.2:3b"], "mode": "attach"},
            "node": {"id": "g1", "region": "us-east-1", "pool": "small"},
            "preemption": {"provider": "aws"},
        },
    )
    result = run_cli("check-config", "--config", str(path), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "config ok: node g1 (us-east-1/small, gpu)",
        "  engine: ollama in attach mode on 127.0.0.1:11434, models llama3.2:3b",
        "  serving: 0.0.0.0:8080, 1 API key(s)",
    ]


def test_the_shipped_example_passes_its_own_check_config_before_the_key_file_exists(tmp_path: Path) -> None:
    """The example names /etc/fleet-agent/api-key, which fetch-secrets writes at boot: check-config says so
    instead of failing; an empty key file that is there is still refused, and run needs the keys."""
    example = Path(__file__).resolve().parents[2] / "config" / "agent.example.toml"
    result = run_cli("check-config", "--config", str(example))
    assert result.returncode == 0, result.stderr
    assert "API keys from /etc/fleet-agent/api-key (not there yet" in result.stdout
    empty = tmp_path / "api-key"
    empty.write_text("")
    result = run_cli(
        "check-config", "--config", str(example), env={"FLEET_AGENT__SERVER__API_KEY_FILE": str(empty)}
    )
    assert (result.returncode, result.stderr) == (
        2,
        f"fleet-agent: config: server.api_key_file: {empty} holds no key\n",
    )
    with pytest.raises(ConfigError):
        load_config(example, {})


def test_cli_help_and_port_in_use(tmp_path: Path) -> None:
    assert "drains on preemption" in run_cli("--help").stdout
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(
            tmp_path,
            {"engine": {"kind": "vllm", "models": ["m"]}, "server": {"host": "127.0.0.1", "port": port}},
        )
        result = run_cli("run", "--config", str(path), env=KEY_ENV)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in result.stderr
