"""`fleet-agent run` on a sandbox node: the agent's own command line and server, with the emulated GPU
(fleet.sandbox.gpu, fed by the node's control file) in place of NVML, which cannot load without a GPU.

    python -m fleet.sandbox.node_agent --config AGENT_TOML --gpu-control FILE
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from fleet.sandbox.gpu import EmulatedGpu
from fleet_agent.config import ConfigError, load_config
from fleet_agent.main import EXIT_BAD_CONFIG, EXIT_FAILURE, serve, setup_logging
from fleet_agent.server import bind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet-agent (sandbox node)")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--gpu-control", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"fleet-agent: {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    setup_logging(config.log_level)
    try:
        sock = bind(config.server.host, config.server.port)
    except OSError as exc:
        print(f"fleet-agent: cannot listen on port {config.server.port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    gpu = EmulatedGpu(config.gpu.count, control=args.gpu_control)
    return asyncio.run(serve(config, sock, gpu_backend=gpu))


if __name__ == "__main__":
    sys.exit(main())
