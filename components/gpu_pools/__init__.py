"""The GPU pools capability: its config section today; the node pools land with their issue.

Published: `GpuPoolConfig`.
"""

from components.gpu_pools.config import GpuPoolConfig

__all__ = ["GpuPoolConfig"]
