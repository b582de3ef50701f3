"""Judging GPU health: periodic readings against thresholds, and critical XID events waited on in
a thread. A critical XID condemns its GPU until the node is replaced (or the agent restarted after a
reset); a reading problem clears when the reading does."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from fleet_agent import constants as c
from fleet_agent.config import GpuConfig
from fleet_agent.gpu.backend import GpuBackend, GpuProcess, GpuReading, GpuUnavailable, XidEvent

log = logging.getLogger("fleet_agent.gpu")

MAX_XID_EVENTS_KEPT = 50


def describe_xid(xid: int) -> str:
    name = c.XID_DESCRIPTIONS.get(xid)
    return f"XID {xid} ({name})" if name else f"XID {xid}"


def throttle_names(reasons: int) -> list[str]:
    return [name for bit, name in c.THROTTLE_NAMES.items() if reasons & bit]


def assess(readings: Sequence[GpuReading], config: GpuConfig) -> list[str]:
    """Problems with the readings; empty when every GPU is fit to serve."""
    problems: list[str] = []
    if len(readings) < config.count:
        problems.append(f"expected {config.count} GPU(s), found {len(readings)}")
    for gpu in readings:
        where = f"GPU {gpu.index}"
        if gpu.memory_total_bytes <= 0:
            problems.append(f"{where}: reports no memory")
        if gpu.slowdown_temperature_c is not None:
            limit = gpu.slowdown_temperature_c - config.temperature_margin_c
            if gpu.temperature_c >= limit:
                problems.append(
                    f"{where}: {gpu.temperature_c} C at or above its slowdown threshold "
                    f"{gpu.slowdown_temperature_c} C (margin {config.temperature_margin_c} C)"
                )
        if gpu.ecc_uncorrected_volatile:
            problems.append(f"{where}: {gpu.ecc_uncorrected_volatile} uncorrected ECC error(s)")
        if gpu.remap_failed:
            problems.append(f"{where}: row remapping failed; the board needs replacing")
        elif gpu.remap_pending:
            problems.append(f"{where}: row remap pending; the GPU needs a reset")
        critical = gpu.throttle_reasons & c.CRITICAL_THROTTLE_REASONS
        if critical:
            problems.append(f"{where}: hardware throttling ({', '.join(throttle_names(critical))})")
    return problems


class GpuMonitor:
    """Owns the backend: opens it (again, after a failure), reads it off the event loop, and runs
    the XID thread. `on_change` is called on the event loop when an XID condemns a GPU."""

    def __init__(self, backend: GpuBackend, config: GpuConfig, on_change: Callable[[], None]) -> None:
        self._backend = backend
        self._config = config
        self._on_change = on_change
        self._opened = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.readings: list[GpuReading] = []
        self._reading_problems: list[str] = ["GPU not checked yet"]
        self.xid_events: list[XidEvent] = []
        self.condemned: dict[int | None, XidEvent] = {}

    async def check(self) -> list[str]:
        try:
            if not self._opened:
                await asyncio.to_thread(self._backend.open)
                self._opened = True
                self._start_xid_thread()
            self.readings = await asyncio.to_thread(self._read_all)
            self._reading_problems = assess(self.readings, self._config)
        except GpuUnavailable as exc:
            self.readings = []
            self._reading_problems = [str(exc)]
        return self.problems

    @property
    def problems(self) -> list[str]:
        condemned = [
            f"GPU {'?' if gpu is None else gpu}: {describe_xid(e.xid)}" for gpu, e in self.condemned.items()
        ]
        return self._reading_problems + condemned

    async def compute_processes(self) -> dict[int, list[GpuProcess]] | None:
        """Each device's compute processes; None while NVML cannot tell."""
        if not self._opened:
            return None
        try:
            return await asyncio.to_thread(self._processes_all)
        except GpuUnavailable as exc:
            log.warning("GPU compute processes not read: %s", exc)
            return None

    def _processes_all(self) -> dict[int, list[GpuProcess]]:
        return {
            index: self._backend.compute_processes(index) for index in range(self._backend.device_count())
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=c.XID_WAIT_TIMEOUT_MS / 1000 + 1)
        if self._opened:
            self._backend.close()
            self._opened = False

    def _read_all(self) -> list[GpuReading]:
        return [self._backend.read(index) for index in range(self._backend.device_count())]

    def _start_xid_thread(self) -> None:
        try:
            self._backend.register_xid_events()
        except GpuUnavailable as exc:
            log.warning("XID events not watched: %s", exc)
            return
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._wait_for_xids, args=(loop,), name="xid-events", daemon=True
        )
        self._thread.start()

    def _wait_for_xids(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            try:
                event = self._backend.wait_xid(c.XID_WAIT_TIMEOUT_MS)
            except GpuUnavailable as exc:
                log.error("XID watch stopped: %s", exc)
                return
            if event is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._record_xid, event)

    def _record_xid(self, event: XidEvent) -> None:
        self.xid_events = [*self.xid_events[-(MAX_XID_EVENTS_KEPT - 1) :], event]
        if event.xid in self._config.ignored_xids:
            log.info(
                "GPU %s: %s: application-level, GPU stays healthy", event.gpu_index, describe_xid(event.xid)
            )
            return
        log.error("GPU %s: %s: GPU condemned", event.gpu_index, describe_xid(event.xid))
        self.condemned.setdefault(event.gpu_index, event)
        self._on_change()
