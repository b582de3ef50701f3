"""The model store on a node, on real parts: redis-server (metadata, with a password), moto's S3 (chunks),
the real JuiceFS client and FUSE, and real llama.cpp loading its model from the mount.

- the engine starts, and the node is ready, only once the model its manifest lists is warm in the cache;
- a mount whose client was killed goes stale (ENOTCONN): the agent sees it, mounts again, and the engine
  keeps running;
- the node's mount is read-only: writes are refused;
- `fleet-agent mount-store` (the host's unit) mounts in the foreground with the password from Secrets
  Manager, and unmounts on SIGTERM.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_agent.config import ConfigError, ModelStoreConfig, load_config
from fleet_agent.juicefs import JuiceFs, parse_check
from fleet_agent.metrics import AgentMetrics
from fleet_agent.model_store import ModelStore, probe_mount
from fleet_agent.mountinfo import mount_entry

from .agent_testkit.fake_autoscaling import moto_client
from .agent_testkit.fake_metadata import FakeImds
from .agent_testkit.harness import RunningAgent, completion, llama_config, to_toml, write_config
from .agent_testkit.juicefs import (
    PASSWORD,
    Volume,
    force_unmount,
    kill_mount,
    mount,
    mounted,
    put_model,
    require_fuse,
    volume,
)
from .agent_testkit.net import serving, wait_for

MODEL_DIR = "tiny/llama"
FILLER_BYTES = 24 << 20  # enough that warming reads chunks from the object store


@pytest.fixture
def store_volume(tmp_path: Path, moto_url: str) -> Iterator[Volume]:
    require_fuse()
    with volume(tmp_path, moto_url) as vol:
        yield vol


def store_section(vol: Volume, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "volume": vol.name,
        "meta_url": vol.meta_url,
        "meta_password_file": str(vol.password_file),
        "mount_point": str(tmp_path / "models"),
        "model_dir": MODEL_DIR,
        "cache_dir": str(tmp_path / "cache"),
        "cache_size_mib": 1024,
        "metrics_address": "127.0.0.1:0",
        "log_file": str(tmp_path / "juicefs.log"),
        "juicefs": [vol.juicefs],
        "warmup_threads": 4,
        "warmup_poll_s": 0.2,
        "check_period_s": 0.2,
        "remount_backoff_s": 0.2,
        **extra,
    }


def node_config(vol: Volume, tmp_path: Path) -> dict[str, Any]:
    model = tmp_path / "models" / MODEL_DIR / "tiny.gguf"
    return llama_config(model, model_store=store_section(vol, tmp_path))


def sync_model(vol: Volume, tmp_path: Path, tiny_model: Path) -> int:
    """The model written through a writable mount of its own, manifest last; its total bytes."""
    with mount(vol, tmp_path / "writer", tmp_path / "writer-cache") as writer:
        files: dict[str, bytes | Path] = {
            "tiny.gguf": tiny_model,
            "extra/weights.bin": os.urandom(FILLER_BYTES),
        }
        return put_model(writer / MODEL_DIR, files, "tiny").total_bytes


def test_the_engine_starts_and_the_node_is_ready_only_once_the_model_is_warm(
    tmp_path: Path, tiny_model: Path, store_volume: Volume
) -> None:
    vol = store_volume
    with mount(vol, tmp_path / "writer", tmp_path / "writer-cache") as writer:
        (writer / MODEL_DIR).mkdir(parents=True)  # the directory, but no manifest yet: a sync under way
    mount_point = tmp_path / "models"
    try:
        with RunningAgent(write_config(tmp_path, node_config(vol, tmp_path))) as node:
            waiting = node.wait_detail("store", "fleet-manifest.json", timeout=30)
            assert waiting["state"] == "starting" and node.readyz() == 503
            assert waiting["engine"]["pid"] is None  # nothing to load yet: the engine is not started
            assert waiting["model_store"]["mounted"] is True

            total = sync_model(vol, tmp_path, tiny_model)

            def engine_started() -> dict[str, Any] | None:
                status = node.status()
                return status if status["engine"]["pid"] is not None else None

            first = wait_for(engine_started, 60, "the engine to start")
            assert first["model_store"]["warmup"]["done"] is True  # started only once the cache was warm
            ready = node.wait_state("ready", 60)
            warmup = ready["model_store"]["warmup"]
            assert (warmup["ratio"], warmup["cached_bytes"], warmup["total_bytes"]) == (1.0, total, total)
            assert ready["checks"]["store"]["ok"] is True
            assert ready["model"]["load_seconds"] > 0

            metrics = node.http.get("/metrics").text
            assert "fleet_agent_model_store_mounted 1" in metrics
            assert "fleet_agent_model_store_warmup_ratio 1" in metrics
            assert f"fleet_agent_model_store_warm_bytes {total}" in metrics
            assert "fleet_agent_model_store_warmup_seconds_count 1" in metrics
            assert "fleet_agent_model_load_seconds_count 1" in metrics

            # The client's own view of its cache: every listed byte is there.
            check = subprocess.run(
                [vol.juicefs, "warmup", "--check", str(mount_point / MODEL_DIR)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert parse_check(check.stdout + check.stderr).ratio == 1.0
            answer = node.http.post("/v1/completions", json=completion(4), headers=node.headers())
            assert answer.status_code == 200, answer.text
    finally:
        force_unmount(vol.juicefs, mount_point)


def test_a_killed_mount_is_mounted_again_and_the_engine_keeps_running(
    tmp_path: Path, tiny_model: Path, store_volume: Volume
) -> None:
    vol = store_volume
    sync_model(vol, tmp_path, tiny_model)
    mount_point = tmp_path / "models"
    try:
        with RunningAgent(write_config(tmp_path, node_config(vol, tmp_path))) as node:
            before = node.wait_state("ready", 60)
            engine_pid = before["engine"]["pid"]

            killed = kill_mount(mount_point)
            assert killed
            # What the engine would see now, until the agent mounts it again: ENOTCONN.
            stale = probe_mount(mount_point, vol.name)
            if not stale.ok:  # the agent may already have mounted it again
                assert stale.stale and "ENOTCONN" in stale.detail

            def remounted() -> dict[str, Any] | None:
                status = node.status()
                store = status["model_store"]
                return status if store["remounts"] == 1 and status["checks"]["store"]["ok"] else None

            after = wait_for(remounted, 30, "the store to be mounted again")
            assert after["engine"]["pid"] == engine_pid and after["engine"]["restarts"] == 0
            assert 'fleet_agent_model_store_remounts_total{cause="stale"} 1' in node.http.get("/metrics").text
            assert "fleet_agent_engine_restarts_total" not in node.http.get("/metrics").text
            assert sorted(os.listdir(mount_point / MODEL_DIR)) == [
                "extra",
                "fleet-manifest.json",
                "tiny.gguf",
            ]
            node.wait_state("ready", 30)
            answer = node.http.post("/v1/completions", json=completion(4), headers=node.headers())
            assert answer.status_code == 200, answer.text
    finally:
        force_unmount(vol.juicefs, mount_point)


def test_the_nodes_mount_is_read_only(tmp_path: Path, tiny_model: Path, store_volume: Volume) -> None:
    vol = store_volume
    sync_model(vol, tmp_path, tiny_model)
    config = ModelStoreConfig.model_validate(store_section(vol, tmp_path))
    assert config.read_only  # the default
    client = JuiceFs(config)
    try:
        asyncio.run(client.mount())
        model = config.model_path
        assert (model / "tiny.gguf").read_bytes() == tiny_model.read_bytes()
        for attempt in (
            lambda: (model / "new.bin").write_bytes(b"x"),
            lambda: (model / "tiny.gguf").unlink(),
            lambda: (model / "sub").mkdir(),
            lambda: (model / "tiny.gguf").open("r+b"),
        ):
            with pytest.raises(OSError) as refused:
                attempt()
            assert refused.value.errno == errno.EROFS
    finally:
        force_unmount(vol.juicefs, config.mount_point)


def test_mount_store_mounts_in_the_foreground_with_the_password_from_secrets_manager(
    tmp_path: Path, tiny_model: Path, store_volume: Volume, moto_url: str
) -> None:
    vol = store_volume
    sync_model(vol, tmp_path, tiny_model)
    secrets = moto_client("secretsmanager", moto_url)
    arn = secrets.create_secret(Name="fleet-test-store", SecretString=json.dumps({"authToken": PASSWORD}))[
        "ARN"
    ]
    section = store_section(
        vol, tmp_path, mode="attach", meta_secret={"aws_secret_id": arn, "key": "authToken"}
    )
    del section["meta_password_file"], section["log_file"]
    mount_point = tmp_path / "models"
    with serving(FakeImds()) as metadata:
        config = tmp_path / "agent.toml"
        config.write_text(
            to_toml(
                {
                    "engine": {"kind": "vllm", "models": ["tiny"]},
                    "preemption": {"aws_imds_url": metadata.url},
                    "model_store": section,
                }
            )
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url,
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        }
        unit = subprocess.Popen(
            [sys.executable, "-m", "fleet_agent.main", "mount-store", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: mounted(mount_point) or unit.poll() is not None, 30, "the foreground mount")
            assert unit.poll() is None, unit.stdout.read().decode() if unit.stdout else ""
            assert probe_mount(mount_point, vol.name).ok
            assert (mount_point / MODEL_DIR / "tiny.gguf").read_bytes() == tiny_model.read_bytes()
            unit.send_signal(signal.SIGTERM)  # systemd's stop
            unit.wait(30)
            assert mount_entry(mount_point) is None
        finally:
            if unit.poll() is None:
                unit.kill()
                unit.wait(10)
            force_unmount(vol.juicefs, mount_point)


# --- without mounting ---------------------------------------------------------------------------------------


def test_the_cache_check_juicefs_prints_is_read() -> None:
    cold = parse_check(
        "2026/11/30 21:15:48 juicefs[8371] <INFO>: check cache: 1 files checked, 0 B of 64 MiB (0.0%) cached [warmup@warmup.go:332]"
    )
    warm = parse_check("check cache: 3 files checked, 1.5 GiB of 1.5 GiB (100.0%) cached")
    assert (cold.files, cold.cached_bytes, cold.total_bytes, cold.ratio) == (1, 0, 64 << 20, 0.0)
    assert (warm.files, warm.cached_bytes, warm.ratio) == (3, int(1.5 * (1 << 30)), 1.0)


def test_mountinfo_is_read_with_its_escapes(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    point = tmp_path / "my models"
    escaped = str(point).replace(" ", "\\040")
    mountinfo.write_text(
        "25 1 0:23 / / rw,relatime - ext4 /dev/vda rw\n"
        f"48 25 0:39 / {escaped} rw,nosuid,nodev,relatime - fuse.juicefs JuiceFS:models rw,user_id=0\n"
    )
    assert mount_entry(point, mountinfo) == ("fuse.juicefs", "JuiceFS:models")
    assert mount_entry(tmp_path / "elsewhere", mountinfo) is None


def test_the_store_config_refuses_what_a_node_must_not_run(tmp_path: Path) -> None:
    base = {"engine": {"kind": "vllm", "models": ["m"]}}
    store = {"volume": "models", "meta_url": "rediss://h:6379/1", "model_dir": "org/model"}

    def problems(**changes: Any) -> list[str]:
        path = tmp_path / "agent.toml"
        path.write_text(to_toml({**base, "model_store": {**store, **changes}}))
        with pytest.raises(ConfigError) as refused:
            load_config(path, environ={}, load_keys=False)
        return refused.value.lines

    assert problems(meta_url="rediss://:secret@h:6379/1") == [
        "config: model_store.meta_url: must not carry credentials: give meta_password_file or meta_secret"
    ]
    assert problems(model_dir="../etc") == [
        "config: model_store.model_dir: got '../etc'; a directory in the volume is '/'-separated names of "
        "letters, digits, '.', '_' and '-' (not '.' or '..')"
    ]
    assert problems(remount_command=["systemctl", "restart", "x"]) == [
        "config: model_store.remount_command: only for mode 'attach' (in spawn mode the agent mounts)"
    ]
    config = ModelStoreConfig.model_validate(store)
    args = JuiceFs(config).mount_arguments(background=False)
    assert args[:4] == ["juicefs", "mount", "rediss://h:6379/1", "/mnt/fleet-models"]
    for flag in ("--read-only", "--no-bgjob", "--no-usage-report"):
        assert flag in args
    assert args[args.index("--cache-dir") + 1] == "/var/lib/fleet-models/juicefs-cache"
    assert "--background" not in args


def test_an_unmounted_attach_mode_store_waits_for_the_host(tmp_path: Path) -> None:
    config = ModelStoreConfig.model_validate(
        {
            "volume": "models",
            "meta_url": "redis://127.0.0.1:1/1",
            "model_dir": "org/model",
            "mode": "attach",
            "mount_point": str(tmp_path / "models"),
        }
    )
    ok, detail = asyncio.run(ModelStore(config, AgentMetrics()).ensure())
    assert (
        not ok and detail == f"waiting for the host to mount the volume: {tmp_path / 'models'} is not mounted"
    )


def test_the_store_check_is_part_of_readiness(tmp_path: Path, tiny_model: Path) -> None:
    """With a store configured and nothing mountable, the node never starts its engine nor gets ready."""
    section = {
        "volume": "models",
        "meta_url": "redis://127.0.0.1:1/1",
        "model_dir": "org/model",
        "mode": "attach",
        "mount_point": str(tmp_path / "models"),
        "check_period_s": 0.2,
    }
    with RunningAgent(write_config(tmp_path, llama_config(tiny_model, model_store=section))) as node:
        status = node.wait_detail("store", "waiting for the host to mount the volume")
        assert status["state"] == "starting" and status["engine"]["pid"] is None
        assert httpx.get(node.url + "/readyz").status_code == 503
