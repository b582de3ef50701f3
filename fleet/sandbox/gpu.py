"""The emulated GPU: a `GpuBackend` (the agent's narrow NVML interface) that reports healthy readings and
replays XID events, in place of NVML on a machine without a GPU.

Tests drive it directly (`replay_xid`, `change`; the agent's test kit's `FakeGpuBackend` adds the compute
processes a test sets). A sandbox node's agent runs it in its own process, fed
by a control file the drills append to: one JSON object a line, `{"xid": 79}` or
`{"change": {"temperature_c": 95}}`; the XID thread picks lines up as NVML's event wait would return
them."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from pathlib import Path

from fleet_agent.gpu.backend import GpuProcess, GpuReading, GpuUnavailable, XidEvent
from fleet_agent.gpu.residency import process_tree

A10G_MEMORY = 24 * 1024**3
CONTROL_POLL_S = 0.1


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


class EmulatedGpu:
    def __init__(
        self, count: int = 1, *, unavailable: str | None = None, control: Path | None = None
    ) -> None:
        self.readings = [healthy_reading(i) for i in range(count)]
        self.unavailable = unavailable  # "NVML Shared Library Not Found", as on this machine
        self.registered = False
        self.closed = False
        self.control = control
        self._control_offset = 0
        self._events: queue.Queue[XidEvent] = queue.Queue()
        self._lock = threading.Lock()

    # --- what tests and drills do ------------------------------------------------------------------
    def replay_xid(self, xid: int, gpu: int = 0) -> None:
        self._events.put(XidEvent(gpu_index=gpu, xid=xid, at=time.time()))

    def change(self, index: int = 0, **fields: object) -> None:
        with self._lock:
            self.readings[index] = dataclasses.replace(self.readings[index], **fields)  # type: ignore[arg-type]

    def _read_control(self) -> None:
        """New lines of the control file, applied in order."""
        if self.control is None or not self.control.exists():
            return
        with self.control.open("rb") as handle:
            handle.seek(self._control_offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._control_offset += len(complete)
        for line in complete.splitlines():
            order = json.loads(line)
            if "xid" in order:
                self.replay_xid(int(order["xid"]), int(order.get("gpu", 0)))
            if "change" in order:
                self.change(int(order.get("gpu", 0)), **order["change"])

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
        """What NVML would list once the engine loaded its model on the GPU: the processes the agent
        spawned (llama.cpp on the CPU stands for the engine) on every device, sizes unknown (as NVML
        reports them in some setups)."""
        if self.unavailable:
            raise GpuUnavailable(f"NVML unavailable: {self.unavailable}")
        agent = os.getpid()
        return [GpuProcess(pid, None) for pid in sorted(process_tree(agent) - {agent})]

    def register_xid_events(self) -> None:
        self.registered = True

    def wait_xid(self, timeout_ms: int) -> XidEvent | None:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self._read_control()
            left = deadline - time.monotonic()
            try:
                return self._events.get(timeout=max(0.0, min(left, CONTROL_POLL_S if self.control else left)))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None


def order_xid(control: Path, xid: int, gpu: int = 0) -> None:
    """Append an XID event for an emulated GPU's agent to pick up."""
    with control.open("a") as handle:
        handle.write(json.dumps({"xid": xid, "gpu": gpu}) + "\n")
