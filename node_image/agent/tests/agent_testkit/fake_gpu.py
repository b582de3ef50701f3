"""A GpuBackend that replays readings and XID events in place of NVML: the sandbox's emulated GPU,
`fleet.sandbox.gpu`, driven directly by the tests."""

from fleet.sandbox.gpu import A10G_MEMORY, EmulatedGpu, healthy_reading

FakeGpuBackend = EmulatedGpu

__all__ = ["A10G_MEMORY", "FakeGpuBackend", "healthy_reading"]
