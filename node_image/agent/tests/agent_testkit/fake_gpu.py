"""A GpuBackend that replays readings, compute processes and XID events, in place of NVML on a machine
without a GPU. As NVML does, it lists processes by PID whether or not they exist; a test names the
engine's real PIDs (or its child's) to say that the engine holds GPU memory."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

from fleet.sandbox.gpu import A10G_MEMORY, healthy_reading
from fleet_agent.gpu.backend import GpuProcess, GpuReading, GpuUnavailable, XidEvent

__all__ = ["A10G_MEMORY", "FakeGpuBackend", "healthy_reading"]


class FakeGpuBackend:
    def __init__(self, count: int = 1, *, unavailable: str | None = None) -> None:
        self.readings = [healthy_reading(i) for i in range(count)]
        self.processes: dict[int, list[GpuProcess]] = {i: [] for i in range(count)}
        self.unavailable = unavailable  # "NVML Shared Library Not Found", as on this machine
        self.registered = False
        self.closed = False
        self._events: queue.Queue[XidEvent] = queue.Queue()
        self._lock = threading.Lock()

    # --- what the tests do ---------------------------------------------------------------------
    def replay_xid(self, xid: int, gpu: int = 0) -> None:
        self._events.put(XidEvent(gpu_index=gpu, xid=xid, at=time.time()))

    def hold(self, pid: int, used_bytes: int | None, gpu: int = 0) -> None:
        """`pid` holds `used_bytes` of the GPU's memory (None: NVML cannot say how much), alone."""
        with self._lock:
            self.processes[gpu] = [GpuProcess(pid, used_bytes)]

    def change(self, index: int = 0, **fields: object) -> None:
        with self._lock:
            self.readings[index] = dataclasses.replace(self.readings[index], **fields)  # type: ignore[arg-type]

    # --- GpuBackend ----------------------------------------------------------------------------
    def open(self) -> None:
        if self.unavailable:
            raise GpuUnavailable(f"NVML unavailable: {self.unavailable}")

    def close(self) -> None:
        self.closed = True

    def device_count(self) -> int:
        return len(self.readings)

    def read(self, index: int) -> GpuReading:
        with self._lock:
            return self.readings[index]

    def compute_processes(self, index: int) -> list[GpuProcess]:
        if self.unavailable:
            raise GpuUnavailable(f"NVML unavailable: {self.unavailable}")
        with self._lock:
            return list(self.processes[index])

    def register_xid_events(self) -> None:
        self.registered = True

    def wait_xid(self, timeout_ms: int) -> XidEvent | None:
        try:
            return self._events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return None
