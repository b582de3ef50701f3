"""GpuBackend over NVML (nvidia-ml-py's pynvml)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pynvml

from fleet_agent import constants as c
from fleet_agent.gpu.backend import GpuProcess, GpuReading, GpuUnavailable, XidEvent


class NvmlBackend:
    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._event_set: Any = None
        self._lock = threading.Lock()  # NVML is thread-safe, but our handle list is not

    def open(self) -> None:
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"NVML unavailable: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._event_set is not None:
                _quiet(pynvml.nvmlEventSetFree, self._event_set)
                self._event_set = None
            self._handles = []
        _quiet(pynvml.nvmlShutdown)

    def device_count(self) -> int:
        return len(self._handles)

    def read(self, index: int) -> GpuReading:
        handle = self._handles[index]
        try:
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            temperature = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
            reasons = pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"GPU {index} unreadable: {exc}") from None
        remap = _optional(pynvml.nvmlDeviceGetRemappedRows, handle)
        utilization = _optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
        power_mw = _optional(pynvml.nvmlDeviceGetPowerUsage, handle)
        return GpuReading(
            index=index,
            name=_text(name),
            uuid=_text(uuid),
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
            temperature_c=int(temperature),
            slowdown_temperature_c=_optional(
                pynvml.nvmlDeviceGetTemperatureThreshold, handle, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
            ),
            utilization_pct=None if utilization is None else int(utilization.gpu),
            power_w=None if power_mw is None else power_mw / 1000.0,
            ecc_uncorrected_volatile=_optional(
                pynvml.nvmlDeviceGetTotalEccErrors,
                handle,
                pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                pynvml.NVML_VOLATILE_ECC,
            ),
            remap_pending=None if remap is None else bool(remap[2]),
            remap_failed=None if remap is None else bool(remap[3]),
            throttle_reasons=int(reasons),
        )

    def compute_processes(self, index: int) -> list[GpuProcess]:
        try:
            listed = pynvml.nvmlDeviceGetComputeRunningProcesses(self._handles[index])
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"GPU {index}: compute processes unreadable: {exc}") from None
        # pynvml gives None for NVML_VALUE_NOT_AVAILABLE.
        return [
            GpuProcess(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory)) for p in listed
        ]

    def register_xid_events(self) -> None:
        wanted = pynvml.nvmlEventTypeXidCriticalError | pynvml.nvmlEventTypeDoubleBitEccError
        try:
            self._event_set = pynvml.nvmlEventSetCreate()
            for handle in self._handles:
                supported = pynvml.nvmlDeviceGetSupportedEventTypes(handle)
                pynvml.nvmlDeviceRegisterEvents(handle, wanted & supported, self._event_set)
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"cannot register XID events: {exc}") from None

    def wait_xid(self, timeout_ms: int) -> XidEvent | None:
        try:
            data = pynvml.nvmlEventSetWait(self._event_set, timeout_ms)
        except pynvml.NVMLError as exc:
            if getattr(exc, "value", None) == pynvml.NVML_ERROR_TIMEOUT:
                return None
            raise GpuUnavailable(f"XID wait failed: {exc}") from None
        if data.eventType == pynvml.nvmlEventTypeDoubleBitEccError:
            xid = c.XID_FOR_DOUBLE_BIT_ECC_EVENT
        else:
            xid = int(data.eventData)
        return XidEvent(gpu_index=self._index_of(data.device), xid=xid, at=time.time())

    def _index_of(self, device: Any) -> int | None:
        try:
            return int(pynvml.nvmlDeviceGetIndex(device))
        except pynvml.NVMLError:
            return None  # the event names all devices, or the device is gone


def _optional(function: Any, *args: Any) -> Any:
    """Readings some boards do not support (ECC on consumer cards, remapping before Ampere)."""
    try:
        return function(*args)
    except pynvml.NVMLError:
        return None


def _quiet(function: Any, *args: Any) -> None:
    with contextlib.suppress(pynvml.NVMLError):
        function(*args)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
