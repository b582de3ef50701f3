"""The model store on the node: the JuiceFS volume mounted read-only, the model's files (as its manifest
lists them) warmed into the local cache before the engine starts, and the mount watched.

    STORE check, every check_period_s:
      mount healthy?  (/proc/self/mountinfo says JuiceFS:<volume> at the mount point, and its daemon
                       answers a read of `.stats` within check_timeout_s)
        no, stale (ENOTCONN: the client died) or gone -> mount again (spawn: `juicefs mount -d`;
                       attach: remount_command), backing off when that fails; the engine keeps running
      manifest read and the listed files' sizes match?  no -> not ready, said why
      warmed?  no -> `juicefs warmup -p N -f <the manifest's files>`, its progress read with
                       `juicefs warmup --check` every warmup_poll_s (on /status and the metrics)
    The engine starts once the model is warm (Agent.start), so it loads from the local cache.

The agent never needs the metadata Redis itself: warmup and the checks go through the mount. Mounting
does: spawn mode passes META_PASSWORD from meta_password_file; `fleet-agent mount-store` (the host's
unit, as root) reads it from Secrets Manager and runs the client in the foreground.

The client's command lines and what their output says: juicefs.py. What is mounted where: mountinfo.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet_agent.aio import cancel_and_wait
from fleet_agent.config import AgentConfig, ModelStoreConfig
from fleet_agent.juicefs import CacheCheck, JuiceFs, StoreError, last_line
from fleet_agent.manifest import Manifest, ManifestError, human_bytes, read_manifest, size_problems
from fleet_agent.mountinfo import mount_entry
from fleet_agent.probes import Probe
from fleet_agent.state import Check

if TYPE_CHECKING:
    from fleet_agent.metrics import AgentMetrics

log = logging.getLogger("fleet_agent.model_store")

# A file every JuiceFS mount serves from its daemon (world-readable): reading it proves the daemon answers.
STATS_FILE = ".stats"
# Warmed: the check reports this share of the listed bytes in the cache (it prints one decimal).
WARM_RATIO = 0.999


# --- the mount's health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountHealth:
    ok: bool
    detail: str
    # Mounted, but the daemon is gone (ENOTCONN) or does not answer: only a new mount brings it back.
    stale: bool = False


def probe_mount(mount_point: Path, volume: str) -> MountHealth:
    """Blocking (a hung FUSE daemon blocks the read): run it in a thread, with a timeout."""
    entry = mount_entry(mount_point)
    if entry is None:
        return MountHealth(False, f"{mount_point} is not mounted")
    fstype, source = entry
    if fstype != "fuse.juicefs":
        return MountHealth(False, f"{mount_point} is a {fstype} mount, not JuiceFS")
    if source != f"JuiceFS:{volume}":
        return MountHealth(False, f"{mount_point} holds {source}, not JuiceFS:{volume}")
    try:
        with (mount_point / STATS_FILE).open("rb") as stats:
            stats.read(64)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "error")
        return MountHealth(False, f"{mount_point} is stale: {name} ({exc.strerror})", stale=True)
    return MountHealth(True, f"JuiceFS:{volume} at {mount_point}")


# --- the store, as the agent drives it --------------------------------------------------------------------


class ModelStore:
    """The store's state on this node: mounted, the manifest read, the model warmed, and what to do next."""

    def __init__(
        self, config: ModelStoreConfig, metrics: AgentMetrics, on_change: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.client = JuiceFs(config)
        self.mounted = False
        self.warmed = asyncio.Event()
        self.manifest: Manifest | None = None
        self.progress = 0.0
        self.cached_bytes = 0
        self.warmup_seconds: float | None = None
        self.remounts = 0
        self.last_error: str | None = None
        self._on_change = on_change
        self._ever_mounted = False
        self._we_mounted = False
        self._started_at = time.monotonic()
        self._backoff = config.remount_backoff_s
        self._next_remount_at = 0.0
        self._next_warmup_at = 0.0
        self._warmup_task: asyncio.Task[None] | None = None

    @property
    def model_path(self) -> Path:
        return self.config.model_path

    async def ensure(self) -> tuple[bool, str]:
        """One round of the STORE check: mend what can be mended, and say where the store stands."""
        health = await self._health()
        if not health.ok:
            self._set_mounted(False)
            waiting = await self._recover(health)
            if waiting is not None:
                return False, waiting
            health = await self._health()
            if not health.ok:
                return False, health.detail
        self._set_mounted(True)
        return await self._ensure_warm()

    async def close(self) -> None:
        """Stop warming; a mount the agent made itself is unmounted (spawn mode: the agent owns it)."""
        if self._warmup_task is not None:
            await cancel_and_wait([self._warmup_task])
        if self._we_mounted:
            try:
                await self.client.unmount()
            except StoreError as exc:
                log.warning("model store: unmount failed (%s); forcing it", exc)
                with contextlib.suppress(StoreError):
                    await self.client.unmount(force=True)

    # --- the mount -------------------------------------------------------------------------------------

    async def _health(self) -> MountHealth:
        c = self.config
        try:
            async with asyncio.timeout(c.check_timeout_s):
                return await asyncio.to_thread(probe_mount, c.mount_point, c.volume)
        except TimeoutError:
            return MountHealth(
                False, f"{c.mount_point} did not answer within {c.check_timeout_s:g} s", stale=True
            )

    def _set_mounted(self, mounted: bool) -> None:
        self.mounted = mounted
        self._ever_mounted = self._ever_mounted or mounted
        self.metrics.store_mounted.set(1.0 if mounted else 0.0)

    async def _recover(self, health: MountHealth) -> str | None:
        """Mount (again); None when that was done, else why the store still waits."""
        c = self.config
        now = time.monotonic()
        if c.mode == "attach":
            if not self._ever_mounted and not health.stale and now - self._started_at < c.attach_grace_s:
                return f"waiting for the host to mount the volume: {health.detail}"
            if c.remount_command is None:
                return f"{health.detail}; the host mounts it again (no remount_command)"
        if now < self._next_remount_at:
            wait = self._next_remount_at - now
            return f"{health.detail}; mounting again in {wait:.0f} s ({self.last_error})"
        first = c.mode == "spawn" and not self._ever_mounted and not health.stale
        cause = "stale" if health.stale else "not_mounted"
        try:
            if c.mode == "spawn":
                if health.stale:
                    with contextlib.suppress(StoreError):
                        await self.client.unmount(force=True)
                await self.client.mount()
                self._we_mounted = True
            else:
                assert c.remount_command is not None
                await self.client.run(c.remount_command, c.mount_timeout_s)
        except StoreError as exc:
            self.last_error = str(exc)
            self._next_remount_at = now + self._backoff
            self._backoff = min(self._backoff * 2, c.remount_backoff_max_s)
            log.warning("model store: mounting %s failed: %s", c.volume, exc)
            return f"{health.detail}; mounting failed: {exc}"
        self._backoff = c.remount_backoff_s
        if first:
            log.info("model store: mounted JuiceFS:%s at %s", c.volume, c.mount_point)
        else:
            self.remounts += 1
            self.metrics.store_remounts.inc((cause,))
            log.warning("model store: %s; mounted it again (the engine keeps running)", health.detail)
            # The new mount must still serve the model as its manifest lists it; the cache survived.
            self.manifest = None
        return None

    # --- the model ----------------------------------------------------------------------------------------

    async def _ensure_warm(self) -> tuple[bool, str]:
        c = self.config
        if self.manifest is None:
            try:
                async with asyncio.timeout(c.mount_timeout_s):
                    manifest = await asyncio.to_thread(read_manifest, self.model_path)
                async with asyncio.timeout(c.mount_timeout_s):
                    problems = await asyncio.to_thread(size_problems, self.model_path, manifest)
            except ManifestError as exc:
                return False, f"model {c.model_dir}: {exc}"
            except TimeoutError:
                return False, f"model {c.model_dir}: reading its manifest took over {c.mount_timeout_s:g} s"
            if problems:
                return False, f"model {c.model_dir} does not match its manifest: {'; '.join(problems[:3])}"
            self.manifest = manifest
            self.metrics.store_model_bytes.set(float(manifest.total_bytes))
        manifest = self.manifest
        total = human_bytes(manifest.total_bytes)
        if self.warmed.is_set():
            return True, f"{c.model_dir}: {len(manifest.files)} files, {total}, warm in {c.cache_dir}"
        if not c.warmup:
            self._set_warmed(0.0)
            return True, f"{c.model_dir}: {len(manifest.files)} files, {total} (warmup off)"
        task = self._warmup_task
        if (task is None or task.done()) and time.monotonic() >= self._next_warmup_at:
            self._warmup_task = asyncio.create_task(self._warm(manifest), name="store-warmup")
        detail = f"warming {c.model_dir}: {self.progress:.0%} of {total}"
        return False, detail + (f" (last attempt: {self.last_error})" if self.last_error else "")

    async def _warm(self, manifest: Manifest) -> None:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fleet-warmup-") as scratch:
            listing = Path(scratch) / "files"
            listing.write_text("".join(f"{self.model_path / f.path}\n" for f in manifest.files))
            try:
                with (Path(scratch) / "log").open("wb") as output:
                    process = await self.client.start_warmup(listing, output)
                    try:
                        while True:
                            try:
                                async with asyncio.timeout(self.config.warmup_poll_s):
                                    await process.wait()
                                break
                            except TimeoutError:
                                await self._read_progress(listing)
                    finally:
                        if process.returncode is None:
                            with contextlib.suppress(ProcessLookupError):
                                process.kill()
                            await process.wait()
                check = await self._read_progress(listing)
                if process.returncode != 0:
                    raise StoreError(
                        f"juicefs warmup exited {process.returncode}: "
                        f"{last_line((Path(scratch) / 'log').read_text(errors='replace'))}"
                    )
                if check.ratio < WARM_RATIO:
                    raise StoreError(
                        f"warmup ended with {check.ratio:.1%} cached: is cache_size_mib "
                        f"({self.config.cache_size_mib}) smaller than the model?"
                    )
            except StoreError as exc:
                self.last_error = str(exc)
                self._next_warmup_at = time.monotonic() + self.config.remount_backoff_max_s
                log.warning("model store: warming %s failed: %s", self.config.model_dir, exc)
                self._changed()
                return
        self._set_warmed(time.monotonic() - started)

    async def _read_progress(self, listing: Path) -> CacheCheck:
        try:
            check = await self.client.check(listing)
        except StoreError as exc:
            log.debug("model store: progress unknown: %s", exc)
            return CacheCheck(0, self.cached_bytes, 0, self.progress)
        total = self.manifest.total_bytes if self.manifest is not None else check.total_bytes
        self.progress = check.ratio
        self.cached_bytes = min(int(check.ratio * total), total)
        self.metrics.store_warmup_ratio.set(self.progress)
        self.metrics.store_cached_bytes.set(float(self.cached_bytes))
        return check

    def _set_warmed(self, seconds: float) -> None:
        self.warmup_seconds = seconds
        self.progress = 1.0
        self.last_error = None
        if self.manifest is not None:
            self.cached_bytes = self.manifest.total_bytes
        self.metrics.store_warmup_ratio.set(1.0)
        self.metrics.store_cached_bytes.set(float(self.cached_bytes))
        self.metrics.store_warmup_seconds.observe(seconds)
        log.info("model store: %s warm in %.1f s", self.config.model_dir, seconds)
        self.warmed.set()
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def status(self) -> dict[str, Any]:
        c = self.config
        manifest = self.manifest
        return {
            "volume": c.volume,
            "mode": c.mode,
            "mount_point": str(c.mount_point),
            "read_only": c.read_only,
            "mounted": self.mounted,
            "remounts": self.remounts,
            "model_dir": str(self.model_path),
            "files": None if manifest is None else len(manifest.files),
            "warmup": {
                "done": self.warmed.is_set(),
                "ratio": round(self.progress, 4),
                "cached_bytes": self.cached_bytes,
                "total_bytes": None if manifest is None else manifest.total_bytes,
                "seconds": None if self.warmup_seconds is None else round(self.warmup_seconds, 3),
            },
            "cache_dir": str(c.cache_dir),
            "last_error": self.last_error,
        }


class ModelStoreProbe(Probe):
    """The STORE check: the agent's probe loop drives `ModelStore.ensure`."""

    check = Check.STORE

    @property
    def period(self) -> float:
        store = self.agent.store
        assert store is not None
        return store.config.check_period_s

    async def run(self) -> None:
        store = self.agent.store
        assert store is not None
        ok, detail = await store.ensure()
        self.record(ok, detail)


# --- the host's mount unit ----------------------------------------------------------------------------------


def mount_in_foreground(config: AgentConfig) -> int:
    """`fleet-agent mount-store`: the client in the foreground, as the fleet-model-store unit runs it (as
    root; systemd restarts it if it dies). The password comes from meta_password_file or, with the
    instance role, from the Secrets Manager secret; it reaches the client in its environment only."""
    store = config.model_store
    if store is None:
        print("fleet-agent: no [model_store] in the config: nothing to mount")
        return 0
    password: str | None = None
    if store.meta_secret is not None:
        from fleet_agent.aws import secret_value  # botocore only here

        try:
            password = secret_value(
                store.meta_secret.aws_secret_id, store.meta_secret.key, str(config.preemption.aws_imds_url)
            )
        except RuntimeError as exc:
            print(f"fleet-agent: mount-store: {exc}", file=sys.stderr)
            return 1
    client = JuiceFs(store, password)
    try:
        env = client.environment()
    except StoreError as exc:
        print(f"fleet-agent: mount-store: {exc}", file=sys.stderr)
        return 1
    for directory in (store.cache_dir, store.mount_point):
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
    argv = client.mount_arguments(background=False)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)  # never returns
