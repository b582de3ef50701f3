"""Wall time of `fleet plan --stack prod` in a fresh process, and what each resource costs above the floor.

    uv run python bench/plan_time.py [--stack prod] [--runs 5]

The floor is a fresh process that only imports the SDK modules the render used (pulumi and each cloud
service package it touched): what any Pulumi program declaring these resources pays before it declares
one. Both processes leave without the interpreter's teardown, as `fleet` does. Prints one line per run,
then a JSON summary as the last line. Goal: median under 3 s.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET = str(Path(sys.executable).with_name("fleet"))
# The SDK packages and their service modules (pulumi_aws.ec2) the render loaded, not their internals.
_SDK_MODULE = re.compile(r"^(pulumi|pulumi_[a-z_]+)(\.[a-z0-9_]+)?$")
_LIST_MODULES = """
import json, sys, warnings
warnings.simplefilter("ignore")
from fleet.harness import render
from fleet.stackfile import load_stack
render(load_stack(__import__("pathlib").Path("."), sys.argv[1]))
loaded = [
    name for name, module in sys.modules.items()
    if __import__("re").match(sys.argv[2], name) and type(module).__name__ != "_LazyModule"
]
print(json.dumps(sorted(loaded)))
"""


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    listed = subprocess.run(
        [sys.executable, "-c", _LIST_MODULES, args.stack, _SDK_MODULE.pattern],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = json.loads(listed.stdout.splitlines()[-1])
    # The SDKs import service packages lazily: touch each one's contents, as declaring a resource does.
    floor_command = [
        sys.executable,
        "-c",
        # Reading an attribute the lazy shell lacks (__all__) makes it execute the module. The process
        # leaves as `fleet` does, without tearing the interpreter down.
        "import importlib, os\n"
        f"for m in {modules!r}:\n    getattr(importlib.import_module(m), '__all__', None)\nos._exit(0)",
    ]

    times: list[float] = []
    floors: list[float] = []
    resources = 0
    for run in range(1, args.runs + 1):
        elapsed, result = timed([FLEET, "plan", "--stack", args.stack, "--format", "json"])
        if result.returncode not in (0, 1):
            sys.exit(f"fleet plan failed ({result.returncode}):\n{result.stderr}")
        resources = len(json.loads(result.stdout)["resources"])
        floor, _ = timed(floor_command)
        times.append(elapsed)
        floors.append(floor)
        print(f"run {run}: {elapsed:.2f} s, {resources} resources; import floor {floor:.2f} s")
    median, floor = statistics.median(times), statistics.median(floors)
    summary = {
        "stack": args.stack,
        "runs": args.runs,
        "resources": resources,
        "min_s": round(min(times), 3),
        "median_s": round(median, 3),
        "max_s": round(max(times), 3),
        "sdk_modules": len(modules),
        "import_floor_median_s": round(floor, 3),
        "ms_per_resource_above_floor": round((median - floor) * 1000 / resources, 2),
        "goal_s": 3.0,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
