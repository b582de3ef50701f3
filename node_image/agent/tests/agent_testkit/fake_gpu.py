"""A GpuBackend that replays readings, compute processes and XID events, in place of NVML on a machine
without a GPU. As NVML does, it lists processes by PID whether or not they exist; a test names the
engine's real PIDs (or its child's) to say that the engine holds GPU memory."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

from fleet_agent.gpu.backend import GpuProcess, GpuReading, GpuUnavailable, XidEvent

A10G_MEMORY = 24 * 1024**3


def healthy_reading(index: int = 0) -> GpuReading:
    return GpuReading(
        index=index,
        name="NVIDIA A10G",
        uuid=f"GPU-00000000-0000-0000-0000-00000000000{index}",
        memory_total_bytes=A10G_MEMORY,
        memory_used_bytes=A10G_MEMORY // 3,
        temperature_c=54,
        slowdown_temperature_c=90,
        utilization_pct=37,
        power_w=142.5,
        ecc_uncorrected_volatile=0,
        remap_pending=False,
        remap_failed=False,
        throttle_reasons=0,
    )


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
