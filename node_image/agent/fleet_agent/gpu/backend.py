"""The narrow interface the agent needs from NVML, and the facts it returns.

Everything NVML-specific lives in nvml.py; tests replay readings and XID events through a fake
that implements `GpuBackend`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


class GpuUnavailable(Exception):
    """NVML cannot be used: no driver, no library, or the GPU is lost."""


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    temperature_c: int
    slowdown_temperature_c: int | None  # None where the board does not report one
    utilization_pct: int | None
    power_w: float | None
    ecc_uncorrected_volatile: int | None  # None where ECC is off or unsupported
    remap_pending: bool | None  # a reset is needed to apply remapped rows
    remap_failed: bool | None  # remapping failed: the board needs replacing
    throttle_reasons: int  # nvmlClocksEventReason* bitmask

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GpuProcess:
    """A process with a compute context on a GPU (NVML's compute-process list). In a container NVML
    names processes by their host PID, which the container cannot see."""

    pid: int
    used_memory_bytes: int | None  # None where NVML cannot say (e.g. some vGPU and MIG setups)


@dataclass(frozen=True)
class XidEvent:
    gpu_index: int | None  # None when the event could not be tied to a device
    xid: int
    at: float  # wall-clock seconds


class GpuBackend(Protocol):
    def open(self) -> None:
        """Initialise; raises GpuUnavailable."""
        ...

    def close(self) -> None: ...

    def device_count(self) -> int: ...

    def read(self, index: int) -> GpuReading:
        """One device's facts; raises GpuUnavailable when the device cannot be read."""
        ...

    def compute_processes(self, index: int) -> list[GpuProcess]:
        """The processes holding a compute context on one device; raises GpuUnavailable."""
        ...

    def register_xid_events(self) -> None:
        """Subscribe to critical XID and double-bit ECC events on every device."""
        ...

    def wait_xid(self, timeout_ms: int) -> XidEvent | None:
        """Block up to timeout_ms for the next event; None when none came. Runs in a thread."""
        ...
