"""A GpuBackend that replays readings, compute processes and XID events, in place of NVML on a machine
without a GPU: the sandbox's emulated GPU (readings, XID replay) with the compute processes a test sets.
As NVML does, it lists processes by PID whether or not they exist; a test names the engine's real PIDs (or
its child's) to say that the engine holds GPU memory."""

from __future__ import annotations

from fleet.sandbox.gpu import A10G_MEMORY, EmulatedGpu, healthy_reading
from fleet_agent.gpu.backend import GpuProcess, GpuUnavailable

__all__ = ["A10G_MEMORY", "FakeGpuBackend", "healthy_reading"]


class FakeGpuBackend(EmulatedGpu):
    def __init__(self, count: int = 1, *, unavailable: str | None = None) -> None:
        super().__init__(count, unavailable=unavailable)
        self.processes: dict[int, list[GpuProcess]] = {i: [] for i in range(count)}

    def hold(self, pid: int, used_bytes: int | None, gpu: int = 0) -> None:
        """`pid` holds `used_bytes` of the GPU's memory (None: NVML cannot say how much), alone."""
        with self._lock:
            self.processes[gpu] = [GpuProcess(pid, used_bytes)]

    def compute_processes(self, index: int) -> list[GpuProcess]:
        if self.unavailable:
            raise GpuUnavailable(f"NVML unavailable: {self.unavailable}")
        with self._lock:
            return list(self.processes[index])
