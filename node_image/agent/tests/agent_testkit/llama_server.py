"""`llama-server` for this machine: takes the flags the agent's llama.cpp adapter passes to the
real binary and runs llama.cpp's own HTTP server from the xllamacpp wheel. The engine is real;
only the launcher differs from a GPU node, where the image ships llama.cpp's `llama-server`.

Run as its own process, so the tests can SIGKILL and SIGSTOP it like any engine."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llama-server")
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("-a", "--alias", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-np", "--parallel", type=int, default=1)
    parser.add_argument("-ngl", "--n-gpu-layers", type=int, default=0)
    parser.add_argument("-c", "--ctx-size", type=int, default=0)
    parser.add_argument("-t", "--threads", type=int, default=1)
    parser.add_argument("--metrics", action="store_true")
    # A full context shifts instead of ending the answer: with ignore_eos and no max_tokens a stream never
    # ends on its own (tests that need a request held in flight).
    parser.add_argument("--context-shift", action="store_true")
    args = parser.parse_args(argv)

    # Imported once the arguments parsed (a usage error needs no native library), and typed Any:
    # a Cython extension without type information.
    xllamacpp: Any = importlib.import_module("xllamacpp")

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_gpu_layers = args.n_gpu_layers
    params.n_ctx = args.ctx_size or 4096 * args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_metrics = args.metrics
    params.ctx_shift = args.context_shift
    params.verbosity = -1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"llama-server listening on {server.listening_address}", file=sys.stderr, flush=True)
    stop.wait()
    del server  # joins llama.cpp's threads: a clean stop
    return 0


if __name__ == "__main__":
    sys.exit(main())
