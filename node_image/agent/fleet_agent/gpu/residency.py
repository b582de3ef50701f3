"""Is the model in GPU memory? Judged from NVML, not from the config: a CPU build of the engine, a driver
the engine could not use, or an engine that fell back to the CPU would otherwise be called ready.

On a VM the agent knows the engine's process (it spawned it) and the engine's children (vLLM's
EngineCore and its workers run in child processes): the model is on the GPU when those processes hold
GPU memory (NVML's compute-process list) on as many GPUs as the node must use, and, where the weights'
size is known (the GGUF file, the model directory from the store), at least MODEL_ON_GPU_MIN_SHARE of it.

In a Kubernetes pod NVML names processes by their host PIDs, which the pod cannot see, so no process can
be matched. There the device plugin gives the container its GPUs alone: the memory in use on those
devices is checked against the weights' size instead, and without a known size no verdict is given
(the engine's own report still counts: vLLM's GPU KV-cache blocks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet_agent import constants as c
from fleet_agent.gpu.backend import GpuProcess, GpuReading

PROC = Path("/proc")
WEIGHT_SUFFIXES = frozenset({".gguf", ".safetensors", ".bin", ".pt", ".pth"})
MIB = 2**20


@dataclass(frozen=True)
class Residency:
    on_gpu: bool | None  # None: not judged
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


def process_tree(root: int, proc: Path = PROC) -> set[int]:
    """`root` and every process descended from it (parent PIDs from /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def weights_bytes(path: Path | None) -> int | None:
    """The size of the model's weights: a GGUF file, or the weight files of a model directory."""
    if path is None:
        return None
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            total = sum(f.stat().st_size for f in path.rglob("*") if f.suffix in WEIGHT_SUFFIXES)
            return total or None
    except OSError:
        return None
    return None


def judge(
    processes: Mapping[int, Sequence[GpuProcess]],
    readings: Sequence[GpuReading],
    engine_pids: set[int] | None,
    gpus_needed: int,
    weights: int | None,
) -> Residency:
    """`engine_pids` None: the engine's processes cannot be named (a pod, or an engine the host runs)."""
    needed = int(weights * c.MODEL_ON_GPU_MIN_SHARE) if weights else None
    facts: dict[str, Any] = {"weights_bytes": weights, "gpus_needed": gpus_needed}
    if engine_pids is None:
        return _by_device(readings, gpus_needed, weights, facts)
    held: dict[int, list[GpuProcess]] = {}
    for index, listed in processes.items():
        mine = [p for p in listed if p.pid in engine_pids]
        if mine:
            held[index] = mine
    total = sum(p.used_memory_bytes or 0 for listed in held.values() for p in listed)
    sizes_known = all(p.used_memory_bytes is not None for listed in held.values() for p in listed)
    facts |= {
        "checked": "engine processes",
        "engine_pids": sorted(engine_pids),
        "gpus_holding": sorted(held),
        "engine_gpu_bytes": total if sizes_known else None,
    }
    if len(held) < gpus_needed:
        return Residency(
            False,
            f"the engine's processes hold memory on {len(held)} GPU(s) of the {gpus_needed} it must use "
            "(NVML compute processes)",
            facts,
        )
    if needed is not None and sizes_known and total < needed:
        return Residency(
            False,
            f"the engine's processes hold {total // MIB} MiB of GPU memory, under "
            f"{c.MODEL_ON_GPU_MIN_SHARE:.0%} of the weights' {(weights or 0) // MIB} MiB",
            facts,
        )
    amount = f"{total // MIB} MiB" if sizes_known else "memory (NVML gives no size)"
    return Residency(True, f"the engine's processes hold {amount} on GPU(s) {sorted(held)}", facts)


def _by_device(
    readings: Sequence[GpuReading], gpus_needed: int, weights: int | None, facts: dict[str, Any]
) -> Residency:
    used = sorted((r.memory_used_bytes for r in readings), reverse=True)[:gpus_needed]
    in_use = sum(used)
    facts |= {"checked": "device memory in use", "device_used_bytes": in_use}
    if not weights:
        return Residency(None, "engine processes not nameable (host PIDs), weights' size unknown", facts)
    if len(used) < gpus_needed or in_use < weights * c.MODEL_ON_GPU_MIN_SHARE:
        return Residency(
            False,
            f"{in_use // MIB} MiB in use on the GPU(s), under {c.MODEL_ON_GPU_MIN_SHARE:.0%} of the "
            f"weights' {weights // MIB} MiB",
            facts,
        )
    return Residency(True, f"{in_use // MIB} MiB in use on the GPU(s) given to this pod", facts)
