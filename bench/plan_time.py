"""Wall time of `fleet plan --stack prod` in a fresh process, and the resource count it renders.

    uv run python bench/plan_time.py [--stack prod] [--runs 5]

Prints one line per run, then a JSON summary as the last line. Goal: under 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET = str(Path(sys.executable).with_name("fleet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    times: list[float] = []
    resources = 0
    for run in range(1, args.runs + 1):
        start = time.perf_counter()
        command = [FLEET, "plan", "--stack", args.stack, "--format", "json"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode not in (0, 1):
            sys.exit(f"fleet plan failed ({result.returncode}):\n{result.stderr}")
        resources = len(json.loads(result.stdout)["resources"])
        times.append(elapsed)
        print(f"run {run}: {elapsed:.2f} s, {resources} resources")
    summary = {
        "stack": args.stack,
        "runs": args.runs,
        "resources": resources,
        "min_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "goal_s": 3.0,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
