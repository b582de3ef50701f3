"""The sandbox's supervisor process, started by `fleet sandbox up` in a session of its own:

    python -m fleet.sandbox.daemon --dir STATE_DIR [--nodes N]

It runs the render in STATE_DIR/plan.json until SIGTERM or the control API's /shutdown, keeping
STATE_DIR/state.json current (phase: starting, up, failed, stopping, down), and stops everything it started
before it exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from fleet.sandbox.plan import read_plan
from fleet.sandbox.state import MARKER_ENV, StateDir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet-sandbox-supervisor")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=None)
    args = parser.parse_args(argv)
    state = StateDir(args.dir.resolve())
    os.environ[MARKER_ENV] = str(state.root)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from fleet.sandbox.control import ControlApi
    from fleet.sandbox.world import Sandbox

    plan = read_plan(json.loads(state.plan_file.read_text()))
    sandbox = Sandbox(plan, state, args.nodes)
    record = {
        "pid": os.getpid(),
        "stack": plan.stack,
        "nodes": args.nodes,
        "phase": "starting",
        "step": "",
        "startedAt": time.time(),
        "control": f"http://127.0.0.1:{sandbox.ports['control']}",
        "baseUrl": sandbox.base_url,
        "apiKey": sandbox.master_key,
        "dir": str(state.root),
    }
    state.write(record)

    def on_phase(step: str) -> None:
        record.update(step=step, phase=sandbox.phase)
        if sandbox.problem:
            record["problem"] = sandbox.problem
        state.write(record)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await sandbox.run(ControlApi(lambda: sandbox, stop), stop, on_phase)

    code = 0
    try:
        asyncio.run(run())
    except Exception:
        traceback.print_exc()
        code = 1
    record.update(phase="down" if code == 0 else "failed", stoppedAt=time.time())
    if sandbox.problem:
        record["problem"] = sandbox.problem
    state.write(record)
    return code


if __name__ == "__main__":
    sys.exit(main())
