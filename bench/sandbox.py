"""The sandbox's figures in one JSON object: every drill's (what the clients saw, seconds to detect and to
recover, each next to the plan's budget) and the gateway's added latency (LiteLLM against direct to the
agent, p50 and p95, measured in the same run).

    uv run python bench/sandbox.py [--rps 2] [--drills node-kill,spot-notice,...] [--no-prod] [--samples 60]
                                   [--keep DIR]   (each drill's whole `--json` result as DIR/NAME.json)

It runs `fleet sandbox` as a user does: `up --stack dev --nodes 2 --set controller.bootGraceSeconds=60`
(two nodes, so a drill on one leaves the pool serving; the controller's shortest allowed boot grace, so
node-kill and node-hang need not wait out the rendered ten minutes), the latency samples, every dev drill
in turn, `down`; then `up --stack prod --nodes 1` for region-loss (a primary and a standby), `down`.
About 30 minutes on two cores (gpu-xid and bad-rollout wait out the controller's not-ready and the
launch budgets).

Latency: `--samples` requests each way, interleaved, one at a time, through the OpenAI SDK with 16 tokens
asked: straight to one node's agent (its API key), through the pool's emulated load balancer, and through
the region's LiteLLM (which goes through that load balancer); plus the whole path through the base URL.
`gatewayAdded` is LiteLLM's path minus the load balancer's, per quantile (so the emulated load balancer's
own hop is not counted against LiteLLM).

Goals (issue 22): node-kill, spot-notice, scale-in 0 client-visible errors and 0 silent truncations;
region-loss errors only inside the DNS window and recovery within the plan's budget; every drill
detected within its budget."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.sandbox.drills import DRILLS  # noqa: E402
from fleet.sandbox.load import percentile  # noqa: E402
from fleet.sandbox.state import StateDir  # noqa: E402

DEV_ARGS = ("--nodes", "2", "--set", "controller.bootGraceSeconds=60")
PROD_ARGS = ("--nodes", "1")
PROD_DRILLS = ("region-loss",)


def fleet(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import run; run()", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def up(stack: str, directory: Path, args: tuple[str, ...]) -> float:
    started = time.monotonic()
    done = fleet("sandbox", "up", "--stack", stack, *args, "--dir", str(directory))
    if done.returncode != 0:
        raise SystemExit(f"fleet sandbox up --stack {stack} failed:\n{done.stdout}{done.stderr}")
    return round(time.monotonic() - started, 1)


def status(directory: Path) -> dict[str, Any]:
    return json.loads(fleet("sandbox", "status", "--json", "--dir", str(directory)).stdout)


def quantiles(values: list[float]) -> dict[str, float | None]:
    return {
        name: None if (v := percentile(values, q)) is None else round(v, 4)
        for name, q in (("p50", 0.5), ("p95", 0.95))
    }


def gateway_latency(directory: Path, samples: int) -> dict[str, Any]:
    """One request at a time each way, interleaved, so every path sees the same machine."""
    import openai

    state = StateDir(directory)
    record = state.read() or {}
    snapshot = status(directory)
    region = snapshot["regions"][0]
    pool = region["pools"][0]
    node = next(n for n in pool["nodes"] if n["lb"] == "healthy")
    pool_key = state.secrets()["pool-api-key"]
    route = next(r["model"] for r in region["routes"] if r["order"] == 1)
    paths = {
        "agent": (openai.OpenAI(base_url=node["url"] + "/v1", api_key=pool_key), pool["model"]),
        "loadBalancer": (
            openai.OpenAI(base_url=pool["loadBalancer"] + "/v1", api_key=pool_key),
            pool["model"],
        ),
        "gateway": (openai.OpenAI(base_url=region["gateway"] + "/v1", api_key=record["apiKey"]), route),
        "baseUrl": (openai.OpenAI(base_url=record["baseUrl"], api_key=record["apiKey"]), route),
    }
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for index in range(samples + 3):
        for name, (client, model) in paths.items():
            began = time.perf_counter()
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=16,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            if index >= 3:  # the first few warm connections and caches
                seconds[name].append(time.perf_counter() - began)
    figures: dict[str, Any] = {name: quantiles(values) for name, values in seconds.items()}
    figures["gatewayAdded"] = {
        q: round(figures["gateway"][q] - figures["loadBalancer"][q], 4) for q in ("p50", "p95")
    }
    figures["agentToGateway"] = {
        q: round(figures["gateway"][q] - figures["agent"][q], 4) for q in ("p50", "p95")
    }
    figures["samples"] = samples
    figures["request"] = "chat completion, 16 tokens, not streamed, one at a time"
    return figures


def run_drills(directory: Path, names: list[str], rps: float, keep: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        print(f"bench/sandbox.py: drill {name}...", file=sys.stderr, flush=True)
        done = fleet("sandbox", "drill", name, "--rps", str(rps), "--json", "--dir", str(directory))
        if done.returncode != 0:
            results[name] = {"failed": (done.stderr or done.stdout).strip()[-2000:]}
            continue
        result = json.loads(done.stdout)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{name}.json").write_text(done.stdout)
        client = result["client"]
        results[name] = {
            "stack": result["stack"],
            "target": result["target"],
            "errors": client["errors"],
            "errorsByKind": client["errorsByKind"],
            "silentTruncations": client["silentTruncations"],
            "requests": client["requests"],
            "servedByFallback": client["servedByFallback"],
            "latencySeconds": client["latencySeconds"],
            "detected": result["detected"],
            "recovered": result["recovered"],
            "goal": result["goal"],
            "goalMet": result["goalMet"],
            "notes": result["notes"],
            **(
                {"errorsAfterDnsWindow": client["errorsAfterDnsWindow"]}
                if "errorsAfterDnsWindow" in client
                else {}
            ),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rps", type=float, default=2.0)
    parser.add_argument("--drills", default="all", help="comma-separated drill names (default: all)")
    parser.add_argument("--no-prod", action="store_true", help="skip region-loss (its prod sandbox)")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write each drill's whole result to DIR/NAME.json")
    args = parser.parse_args()
    wanted = list(DRILLS) if args.drills == "all" else args.drills.split(",")
    unknown = [d for d in wanted if d not in DRILLS]
    if unknown:
        raise SystemExit(f"--drills: unknown {', '.join(unknown)}; one of {', '.join(DRILLS)}")
    dev_drills = [d for d in wanted if d not in PROD_DRILLS]
    prod_drills = [] if args.no_prod else [d for d in wanted if d in PROD_DRILLS]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadAverage1m": round(os.getloadavg()[0], 2)},
        "load": {"rps": args.rps},
        "commands": {"dev": " ".join(("fleet sandbox up --stack dev", *DEV_ARGS))},
    }
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        dev = Path(tmp) / "dev"
        try:
            report["upSeconds"] = {"dev": up("dev", dev, DEV_ARGS)}
            print("bench/sandbox.py: gateway latency...", file=sys.stderr, flush=True)
            report["gatewayLatencySeconds"] = gateway_latency(dev, args.samples)
            report["drills"] = run_drills(dev, dev_drills, args.rps, args.keep)
        finally:
            fleet("sandbox", "down", "--dir", str(dev))
        if prod_drills:
            prod = Path(tmp) / "prod"
            report["commands"]["prod"] = " ".join(("fleet sandbox up --stack prod", *PROD_ARGS))
            try:
                report["upSeconds"]["prod"] = up("prod", prod, PROD_ARGS)
                report["drills"] |= run_drills(prod, prod_drills, args.rps, args.keep)
            finally:
                fleet("sandbox", "down", "--dir", str(prod))
    report["machine"]["loadAverage1mAfter"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
