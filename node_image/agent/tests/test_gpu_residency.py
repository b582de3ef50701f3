"""The model's place on the GPU, read from NVML's compute-process list through the agent's fake NVML
backend (no GPU here: these prove the rules and the wiring, not a real driver's answers).

vLLM's GPU work runs in its EngineCore, a child process: the fake `vllm serve` starts one, and only that
child's PID is listed as holding GPU memory. vLLM's own report (`vllm:cache_config_info` num_gpu_blocks)
counts too. In a Kubernetes pod NVML names host PIDs, so the memory in use on the pod's devices is read
against the weights' size instead."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import httpx

from fleet_agent.gpu.backend import GpuProcess
from fleet_agent.gpu.residency import judge, process_tree

from .agent_testkit.fake_gpu import FakeGpuBackend, healthy_reading
from .agent_testkit.harness import FAKE_VLLM, FAST_PROBES, FAST_SUPERVISOR, RunningAgent, write_config
from .agent_testkit.net import free_port, wait_for

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GIB = 2**30


def vllm_gpu_config(*args: str) -> dict[str, object]:
    return {
        "node": {"id": "vllm-gpu-node", "accelerator": "gpu"},
        "engine": {
            "kind": "vllm",
            "models": [MODEL],
            "port": free_port(),
            "executable": FAKE_VLLM,
            "args": list(args),
        },
        "probes": FAST_PROBES,
        "supervisor": FAST_SUPERVISOR,
    }


def engine_core_pid(agent: RunningAgent) -> int:
    port = agent.config.engine.bind_port
    return httpx.get(f"http://127.0.0.1:{port}/fake/engine-core", timeout=5).json()["pid"]


def test_vllm_is_on_the_gpu_when_its_engine_core_child_holds_gpu_memory(tmp_path: Path) -> None:
    gpu = FakeGpuBackend()
    with RunningAgent(write_config(tmp_path, vllm_gpu_config()), gpu_backend=gpu) as agent:
        waiting = agent.wait_detail("model", "hold memory on 0 GPU(s)")
        assert waiting["state"] == "warming"
        engine_pid, core = waiting["engine"]["pid"], engine_core_pid(agent)
        assert core != engine_pid

        gpu.hold(4242424, 20 * GIB)  # another program's memory is not the engine's
        agent.wait_detail("model", "hold memory on 0 GPU(s)")
        assert agent.readyz() == 503

        gpu.hold(core, 20 * GIB)  # the child holds it: the engine's process tree does
        ready = agent.wait_state("ready")
        facts = ready["model"]["facts"]
        assert ready["model"]["on_gpu"] is True
        assert facts["num_gpu_blocks"] == 2048
        assert {engine_pid, core} <= set(facts["gpu_residency"]["engine_pids"])
        assert "20480 MiB on GPU(s) [0]" in ready["model"]["detail"]


def test_vllm_reporting_no_gpu_blocks_is_not_on_the_gpu(tmp_path: Path) -> None:
    gpu = FakeGpuBackend()
    config = vllm_gpu_config("--num-gpu-blocks", "0")
    with RunningAgent(write_config(tmp_path, config), gpu_backend=gpu) as agent:
        gpu.hold(wait_for(lambda: engine_core_pid(agent), 20, "the engine to answer"), 20 * GIB)
        status = agent.wait_detail("model", "vLLM reports 0 GPU KV-cache blocks")
        assert status["state"] == "warming" and status["model"]["on_gpu"] is False
        assert status["model"]["facts"]["num_gpu_blocks"] == 0


def test_process_tree_follows_children_and_grandchildren() -> None:
    grandchild = "import time; time.sleep(30)"
    child = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}]); print(p.pid, flush=True); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        grandchild_pid = int(parent.stdout.readline())
        tree = process_tree(parent.pid)
        assert {parent.pid, grandchild_pid} <= tree
        assert len(tree) == 2  # the python child itself is the parent here: the grandchild is its only one
        assert process_tree(grandchild_pid) == {grandchild_pid}
    finally:
        parent.kill()
        parent.wait()


def test_in_a_pod_the_devices_memory_is_read_against_the_weights() -> None:
    busy = healthy_reading(0)  # 8 GiB in use
    idle = dataclasses.replace(busy, memory_used_bytes=300 * 2**20)  # a CUDA context, no model
    # Host PIDs: nothing to match, so no PIDs are given (None); the processes list is not consulted.
    held = judge({0: [GpuProcess(99, 8 * GIB)]}, [busy], None, gpus_needed=1, weights=10 * GIB)
    assert held.on_gpu is True and held.facts["checked"] == "device memory in use"
    cpu_fallback = judge({0: []}, [idle], None, gpus_needed=1, weights=10 * GIB)
    assert cpu_fallback.on_gpu is False
    assert "300 MiB in use" in cpu_fallback.detail and "10240 MiB" in cpu_fallback.detail
    unknown = judge({0: []}, [busy], None, gpus_needed=1, weights=None)
    assert unknown.on_gpu is None  # no size to compare with: no verdict, never a guess


def test_tensor_parallel_engines_must_hold_memory_on_every_gpu() -> None:
    readings = [healthy_reading(0), healthy_reading(1)]
    workers = {0: [GpuProcess(11, 30 * GIB)], 1: []}
    one = judge(workers, readings, {10, 11, 12}, gpus_needed=2, weights=40 * GIB)
    assert one.on_gpu is False and "on 1 GPU(s) of the 2" in one.detail
    workers[1] = [GpuProcess(12, None)]  # NVML names the process but not its size (vGPU, MIG)
    both = judge(workers, readings, {10, 11, 12}, gpus_needed=2, weights=40 * GIB)
    assert both.on_gpu is True and both.facts["engine_gpu_bytes"] is None
