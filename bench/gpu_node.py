"""The agent's GPU path on a real NVIDIA GPU: its NVML backend read against `nvidia-smi`, its health
rules on the card idle and under load, and the whole agent (its own process, `fleet-agent run`, as
systemd runs it) reporting that card on /readyz, /status and /metrics, serving through its proxy,
then draining on SIGTERM.

    python3 bench/gpu_node.py [--load-seconds 15] [--hold-gib 16] [--llama-server PATH]

Needs an NVIDIA driver (exits 1 naming what is missing otherwise) and an interpreter with the
agent's requirements and PyTorch with CUDA (the load): the project's environment has no PyTorch, so
on a GPU machine run it with that machine's python3 and the agent's wheels on PYTHONPATH.

The engine is the test kit's fake vLLM (vLLM itself is a multi-gigabyte install), whose EngineCore child
process holds --engine-hold-mib of GPU memory through PyTorch as vLLM's does, or with --llama-server a real
CUDA build of llama.cpp's server running the test kit's tiny model with every layer offloaded. Every GPU
fact comes from NVML, which also says how much GPU memory the engine's processes hold: the agent is ready
only once they hold it (its model check reads NVML's compute-process list for the engine's process tree).
The GPU probe runs every second here (5 s on a node) so a short load is sampled often.
Prints progress, then a JSON object as the last line. Goals: readings equal nvidia-smi's, the rules
call a healthy card healthy idle and under full load, a missing GPU or a lowered temperature limit
is refused, the agent stays ready under load and its gauges follow the load, and a SIGTERM drains it
to a clean exit.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "node_image" / "agent"))

from fleet_agent.config import GpuConfig  # noqa: E402
from fleet_agent.gpu.backend import GpuUnavailable  # noqa: E402
from fleet_agent.gpu.health import assess, throttle_names  # noqa: E402
from node_image.agent.tests.agent_testkit.harness import FAKE_VLLM, AgentProcess  # noqa: E402
from node_image.agent.tests.agent_testkit.net import free_port  # noqa: E402

API_KEY = "bench-key"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GPU_PERIOD_S = 1.0
SAMPLE_EVERY_S = 0.25
MIB = 2**20

# A bf16 matrix-product loop that also holds `hold` GiB, so both utilization and memory move.
LOAD = """
import json, sys, time, torch
seconds, hold_gib = float(sys.argv[1]), int(sys.argv[2])
held = torch.empty(hold_gib * 2**30, dtype=torch.uint8, device="cuda")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
torch.cuda.synchronize()
print("loaded", flush=True)
products, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    products += 20
tflops = 2 * 8192**3 * products / (time.perf_counter() - start) / 1e12
print(json.dumps({"products": products, "tflops": round(tflops, 1)}), flush=True)
"""


def nvidia_smi() -> list[dict[str, str]]:
    fields = ["index", "name", "uuid", "memory.total", "driver_version"]
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    return [dict(zip(fields, (v.strip() for v in line.split(",")), strict=True)) for line in out.splitlines()]


def backend_facts() -> dict[str, Any]:
    """The agent's NvmlBackend and rules on this machine's cards, without the agent."""
    from fleet_agent.gpu.nvml import NvmlBackend

    backend = NvmlBackend()
    backend.open()
    try:
        readings = [backend.read(i) for i in range(backend.device_count())]
        try:
            backend.register_xid_events()
            xid_watch = "registered"
            first_wait = backend.wait_xid(200)
            xid_watch += ", no event in 200 ms" if first_wait is None else f", event {first_wait}"
        except GpuUnavailable as exc:
            xid_watch = f"refused: {exc}"
    finally:
        backend.close()
    smi = nvidia_smi()
    matches = len(smi) == len(readings) and all(
        s["uuid"] == r.uuid and s["name"] == r.name and int(s["memory.total"]) == r.memory_total_bytes // MIB
        for s, r in zip(smi, readings, strict=True)
    )
    count = len(readings)
    hottest = max(readings, key=lambda r: r.temperature_c)
    lowered = None  # a margin that puts the slowdown limit at the card's temperature now
    if hottest.slowdown_temperature_c is not None:
        margin = max(0, hottest.slowdown_temperature_c - hottest.temperature_c)
        lowered = GpuConfig(count=count, temperature_margin_c=margin)
    return {
        "devices": [r.as_dict() for r in readings],
        "nvidia_smi": smi,
        "matches_nvidia_smi": matches,
        "xid_watch": xid_watch,
        "idle_problems": assess(readings, GpuConfig(count=count)),
        "one_gpu_too_many": assess(readings, GpuConfig(count=count + 1)),
        "temperature_limit_reached": None if lowered is None else assess(readings, lowered),
    }


def engine_gpu_memory_mib(pid: int) -> int:
    """GPU memory NVML attributes to the engine's processes (its own and its children: 0 for a CPU build)."""
    import pynvml

    from fleet_agent.gpu.residency import process_tree

    tree = process_tree(pid)
    pynvml.nvmlInit()
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        used = [p.usedGpuMemory or 0 for h in handles for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                if p.pid in tree]  # fmt: skip
    finally:
        pynvml.nvmlShutdown()
    return sum(used) // MIB


def engine_config(work: Path, llama_server: Path | None, hold_mib: int) -> dict[str, Any]:
    if llama_server is None:
        return {"kind": "vllm", "models": [MODEL], "port": free_port(), "executable": FAKE_VLLM,
                "args": ["--gpu-hold-mib", str(hold_mib)]}  # fmt: skip
    from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama

    model = write_tiny_llama(work / "tiny.gguf")
    return {"kind": "llamacpp", "models": [MODEL], "model_path": str(model), "port": free_port(),
            "executable": [str(llama_server)]}  # fmt: skip


def agent_config(work: Path, engine: dict[str, Any]) -> dict[str, Any]:
    (work / "key").write_text(API_KEY)
    return {
        "node": {"id": "gpu-bench", "accelerator": "gpu"},
        "engine": engine,
        "server": {"host": "127.0.0.1", "port": free_port(), "api_key_file": str(work / "key")},
        "probes": {"gpu_period_s": GPU_PERIOD_S},
    }


def gpu_gauges(agent: AgentProcess) -> dict[str, float]:
    text = agent.http.get("/metrics").text
    return {
        m["name"]: float(m["value"])
        for m in re.finditer(r'^(?P<name>fleet_agent_gpu_\w+)\{gpu="0"\} (?P<value>\S+)$', text, re.M)
    }


def complete(agent: AgentProcess) -> dict[str, Any]:
    body = {"model": MODEL, "prompt": "GPU check", "max_tokens": 8}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = agent.http.post("/v1/completions", json=body, headers=headers)
    return {"status": response.status_code, "usage": response.json().get("usage")}


def under_load(agent: AgentProcess, seconds: float, hold_gib: int) -> dict[str, Any]:
    """Sample the agent's view of the card while PyTorch works it."""
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD, str(seconds), str(hold_gib)], stdout=subprocess.PIPE, text=True
    )
    assert load.stdout is not None
    if load.stdout.readline().strip() != "loaded":
        raise SystemExit(f"the load did not start (exit {load.wait()})")
    samples: list[dict[str, Any]] = []
    gauges: dict[str, float] = {}  # the scrape that saw the card busiest
    while load.poll() is None:
        status = agent.status()
        samples.append({"state": status["state"], "gpu": status["gpu"]})
        scraped = gpu_gauges(agent)
        busy = "fleet_agent_gpu_utilization_ratio"
        if scraped.get(busy, 0.0) >= gauges.get(busy, 0.0):
            gauges = scraped
        time.sleep(SAMPLE_EVERY_S)
    result = json.loads(load.stdout.read().strip().splitlines()[-1])
    devices = [s["gpu"]["devices"][0] for s in samples if s["gpu"]["devices"]]
    return {
        "samples": len(samples),
        "states_seen": sorted({s["state"] for s in samples}),
        "gpu_problems_seen": sorted({p for s in samples for p in s["gpu"]["problems"]}),
        "max_utilization_pct": max((d["utilization_pct"] or 0) for d in devices),
        "max_memory_used_gib": round(max(d["memory_used_bytes"] for d in devices) / 2**30, 2),
        "max_power_w": max((d["power_w"] or 0.0) for d in devices),
        "max_temperature_c": max(d["temperature_c"] for d in devices),
        "throttle_reasons_seen": sorted({hex(d["throttle_reasons"]) for d in devices}),
        "throttling_seen": sorted({n for d in devices for n in throttle_names(d["throttle_reasons"])}),
        "gauges_during_load": gauges,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--hold-gib", type=int, default=16)
    parser.add_argument("--llama-server", type=Path, help="a CUDA build of llama.cpp's llama-server")
    parser.add_argument("--engine-hold-mib", type=int, default=2048, help="the fake vLLM's GPU memory")
    args = parser.parse_args()
    if shutil.which("nvidia-smi") is None:
        sys.exit("no NVIDIA driver here (nvidia-smi not found): run this on a GPU machine")
    try:
        facts = backend_facts()
    except GpuUnavailable as exc:
        sys.exit(f"the agent's NVML backend cannot open the GPU: {exc}")
    print(f"NVML: {[d['name'] for d in facts['devices']]}, matches nvidia-smi: {facts['matches_nvidia_smi']}")

    work = Path(tempfile.mkdtemp(prefix="gpu-node-bench-"))
    engine = engine_config(work, args.llama_server, args.engine_hold_mib)
    agent = AgentProcess(work, agent_config(work, engine))
    try:
        started = time.perf_counter()
        status = agent.wait_ready()
        ready_s = time.perf_counter() - started
        idle: dict[str, Any] = status["gpu"]
        engine_mib = engine_gpu_memory_mib(status["engine"]["pid"])
        print(f"agent ready after {ready_s:.1f} s; GPU healthy: {idle['healthy']}; engine: {engine_mib} MiB")
        load = under_load(agent, args.load_seconds, args.hold_gib)
        print(f"under load: states {load['states_seen']}, max utilization {load['max_utilization_pct']} %")
        completion = complete(agent)
    finally:
        stopping = time.perf_counter()
        code = agent.stop()
        drain_s = time.perf_counter() - stopping
    log_tail = agent.log_path.read_text().splitlines()[-5:]
    print(
        json.dumps(
            {
                "nvml": facts,
                "agent": {
                    "engine": args.llama_server.name if args.llama_server else "fake vLLM",
                    "ready_s": round(ready_s, 2),
                    "engine_gpu_memory_mib": engine_mib,
                    "model_at_ready": status["model"],
                    "gpu_at_ready": idle,
                    "under_load": load,
                    "completion": completion,
                    "sigterm_exit_code": code,
                    "sigterm_to_exit_s": round(drain_s, 2),
                    "log_tail": log_tail,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
