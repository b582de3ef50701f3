"""An engine that crashes on a Cloud Run task's first attempt: it runs the real llama-server launcher, and
while CLOUD_RUN_TASK_ATTEMPT is 0 it SIGKILLs its whole process group (itself and the server) as soon as the
server has generated more tokens than the readiness canaries do, i.e. in the middle of the batch. Later
attempts run the engine untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

LAUNCHER = Path(__file__).resolve().parents[2] / "fleet/sandbox/llama_server.py"
# Canaries ask for one token each; batch items for more.
CRASH_AFTER_TOKENS = 16


def tokens_predicted(port: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total"):
            return float(line.split()[-1])
    return 0.0


def main() -> int:
    args = sys.argv[1:]
    server = subprocess.Popen([sys.executable, str(LAUNCHER), *args])
    if os.environ.get("CLOUD_RUN_TASK_ATTEMPT") == "0":
        port = args[args.index("--port") + 1]
        while server.poll() is None:
            if tokens_predicted(port) > CRASH_AFTER_TOKENS:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(0.01)
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
