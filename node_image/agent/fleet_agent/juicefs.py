"""The JuiceFS client's command lines for one volume (mount, unmount, warmup and its check), run as
subprocesses with the metadata password in their environment only, and what their output says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_agent.config import ModelStoreConfig

PASSWORD_ENV = "META_PASSWORD"
# `juicefs warmup --check`: "check cache: 1 files checked, 16 MiB of 64 MiB (25.0%) cached"
_CHECKED = re.compile(r"(\d+) files checked, (.+?) of (.+?) \(([\d.]+)%\) cached")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


class StoreError(Exception):
    """A JuiceFS command failed; the message is its last meaningful line."""


def parse_size(text: str) -> int:
    """go-humanize's IBytes ("0 B", "64 MiB", "1.5 GiB") as bytes (approximately: it rounds)."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?)i?B\s*", text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class CacheCheck:
    files: int
    cached_bytes: int
    total_bytes: int
    ratio: float


def parse_check(output: str) -> CacheCheck:
    match = _CHECKED.search(output)
    if match is None:
        raise StoreError(f"no cache check in juicefs' output: {last_line(output)}")
    return CacheCheck(
        files=int(match.group(1)),
        cached_bytes=parse_size(match.group(2)),
        total_bytes=parse_size(match.group(3)),
        ratio=float(match.group(4)) / 100.0,
    )


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    # JuiceFS logs "<date> <time> juicefs[pid] <LEVEL>: message [where]"; keep the message.
    for line in reversed(lines):
        if "<FATAL>" in line or "<ERROR>" in line:
            return re.sub(r"^.*<(FATAL|ERROR)>:\s*", "", line)[:300]
    return (lines[-1] if lines else "no output")[:300]


class JuiceFs:
    """The JuiceFS client's command lines for one volume, from the agent's config."""

    def __init__(self, config: ModelStoreConfig, password: str | None = None) -> None:
        self.config = config
        self._password = password

    def mount_arguments(self, *, background: bool) -> list[str]:
        c = self.config
        args = [
            *c.juicefs, "mount", c.meta_url, str(c.mount_point),
            "--cache-dir", str(c.cache_dir),
            "--cache-size", str(c.cache_size_mib),
            "--free-space-ratio", f"{c.free_space_ratio:g}",
            "--buffer-size", str(c.buffer_size_mib),
            "--prefetch", str(c.prefetch),
            "--metrics", c.metrics_address,
            "--no-usage-report",
        ]  # fmt: skip
        if c.read_only:
            cache = f"{c.metadata_cache_s:g}s"
            args += [
                "--read-only",
                # Background jobs (trash cleanup, metadata backup) write: the store's writer does them.
                "--no-bgjob", "--backup-meta", "0",
                "--attr-cache", cache, "--entry-cache", cache, "--dir-entry-cache", cache,
                "--open-cache", cache,
            ]  # fmt: skip
        if background:
            args.append("--background")
            if c.log_file is not None:
                args += ["--log", str(c.log_file)]
        return args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        password, password_file = self._password, self.config.meta_password_file
        if password is None and password_file is not None:
            try:
                password = password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise StoreError(f"meta_password_file {password_file}: {exc.strerror}") from None
        if password:
            env[PASSWORD_ENV] = password
        return env

    async def run(self, argv: Sequence[str], timeout: float) -> str:
        """Run a command to its end; its output, or StoreError naming what went wrong."""
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
            )
        except OSError as exc:
            raise StoreError(f"cannot run {argv[0]}: {exc.strerror}") from None
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise StoreError(f"{' '.join(argv[:2])} did not finish within {timeout:g} s") from None
        text = output.decode("utf-8", "replace")
        if process.returncode != 0:
            raise StoreError(f"{' '.join(argv[:2])} exited {process.returncode}: {last_line(text)}")
        return text

    async def mount(self) -> None:
        c = self.config
        for directory in (c.cache_dir, c.mount_point):
            with contextlib.suppress(OSError):  # a stale mount point exists but cannot be stat'ed
                directory.mkdir(parents=True, exist_ok=True)
        await self.run(self.mount_arguments(background=True), c.mount_timeout_s)

    async def unmount(self, *, force: bool = False) -> None:
        argv = [*self.config.juicefs, "umount", *(["--force"] if force else []), str(self.config.mount_point)]
        await self.run(argv, self.config.mount_timeout_s)

    async def check(self, list_file: Path) -> CacheCheck:
        argv = [*self.config.juicefs, "warmup", "--check", "--file", str(list_file)]
        return parse_check(await self.run(argv, self.config.mount_timeout_s))

    async def start_warmup(self, list_file: Path, log_file: Any) -> asyncio.subprocess.Process:
        argv = [
            *self.config.juicefs, "warmup",
            "--threads", str(self.config.warmup_threads), "--file", str(list_file),
        ]  # fmt: skip
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=self.environment(),
            start_new_session=True,
        )
