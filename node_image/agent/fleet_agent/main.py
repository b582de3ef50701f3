"""`fleet-agent`: the command line. `run` serves until SIGTERM (or a preemption notice) has been
drained; `job` runs one batch job attempt (Cloud Run jobs; see fleet_agent/job.py for its exit codes);
`dispatch` serves a batch job's admission check (fleet_agent/dispatch.py); `check-config` validates a config
file. Bad config: one line per bad key, exit 2."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fleet_agent import __version__
from fleet_agent import constants as c
from fleet_agent.config import AgentConfig, ConfigError, WebhookHook, load_config

if TYPE_CHECKING:
    from fleet_agent.gpu.backend import GpuBackend

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_CONFIG = 2

log = logging.getLogger("fleet_agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-agent",
        description=(
            "Node agent for inference-fleet GPU nodes: supervises the engine (vLLM, Ollama, llama.cpp), "
            "probes engine and GPU, proxies the engine's API with an API key, drains on preemption."
        ),
    )
    parser.add_argument("--version", action="version", version=f"fleet-agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_help = f"TOML config file (default: $FLEET_AGENT_CONFIG or {c.DEFAULT_CONFIG_PATH})"
    for name, help_text in (
        ("run", "start the engine and serve until drained (SIGTERM or a preemption notice)"),
        ("check-config", "validate the config and print what it sets up"),
        ("job", "run one batch job attempt (Cloud Run jobs): engine up, items through it, status written"),
        ("dispatch", "serve a batch job's admission check (Cloud Tasks -> here -> jobs:run), on $PORT"),
        ("fetch-secrets", "write the [secrets] files from AWS Secrets Manager (before run, at boot)"),
        ("mount-store", "mount the [model_store] volume in the foreground (the fleet-model-store unit)"),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--config", type=Path, default=None, help=config_help)
    return parser


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_CONFIG
    if args.command == "dispatch":  # configured by its environment alone (the Cloud Run service's)
        from fleet_agent.dispatch import serve_dispatch

        setup_logging(os.environ.get("FLEET_AGENT__LOG_LEVEL", "info"))
        return asyncio.run(serve_dispatch())
    path: Path | None = args.config or Path(os.environ.get("FLEET_AGENT_CONFIG", c.DEFAULT_CONFIG_PATH))
    if args.command == "job" and args.config is None and path is not None and not path.exists():
        path = None  # a job container may carry its whole config in FLEET_AGENT__* variables
    try:
        # Job mode serves no proxy; the key file is one of the files fetch-secrets writes.
        config = load_config(
            path,
            load_keys=args.command not in ("job", "fetch-secrets", "mount-store"),
            key_file_may_be_absent=args.command == "check-config",
        )
    except ConfigError as exc:
        for line in exc.lines:
            print(f"fleet-agent: {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.command == "fetch-secrets":
        return _fetch_secrets(config)
    if args.command == "mount-store":
        from fleet_agent.model_store import mount_in_foreground

        return mount_in_foreground(config)
    if args.command == "check-config":
        print(describe(config))
        return EXIT_OK
    setup_logging(config.log_level)
    if args.command == "job":
        from fleet_agent.job import run_job

        return asyncio.run(run_job(config))
    # The server stack is imported only here, so --help and check-config answer at once.
    from fleet_agent.server import bind

    try:
        sock = bind(config.server.host, config.server.port)
    except OSError as exc:
        print(
            f"fleet-agent: cannot listen on {config.server.host}:{config.server.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return asyncio.run(serve(config, sock))


async def serve(config: AgentConfig, sock: socket.socket, *, gpu_backend: GpuBackend | None = None) -> int:
    """Serve until drained. `gpu_backend`: NVML's unless given (the sandbox's nodes run an emulated GPU)."""
    from fleet_agent.agent import Agent
    from fleet_agent.drain import DrainNotice
    from fleet_agent.server import AgentApp, make_server

    agent = Agent(config, gpu_backend=gpu_backend)
    app = AgentApp(agent)
    server = make_server(app, timeout_graceful_shutdown=int(config.drain.timeout_s))
    exit_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    ended_by = "the pod's terminationGracePeriodSeconds" if agent.pod else "systemd's stop timeout"

    def on_signal(sig: signal.Signals) -> None:
        if exit_requested.is_set():
            log.warning("%s again: still draining (%s ends it)", sig.name, ended_by)
            return
        log.warning("%s received: draining before exit", sig.name)
        exit_requested.set()
        now = time.time()
        agent.request_drain(DrainNotice("signal", sig.name, now, now + config.drain.timeout_s))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    await agent.start()
    server_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    exit_wait = asyncio.create_task(exit_requested.wait())
    await asyncio.wait({server_task, exit_wait}, return_when=asyncio.FIRST_COMPLETED)
    code = EXIT_OK
    if server_task.done():  # the server ended by itself: that is a failure
        log.error("HTTP server stopped unexpectedly: %r", server_task.exception())
        code = EXIT_FAILURE
        exit_wait.cancel()
    else:
        await agent.request_drain(
            DrainNotice("signal", "exit", time.time(), time.time() + config.drain.timeout_s)
        )
        server.should_exit = True
        await server_task
    await app.proxy.close()
    await agent.close()
    log.info("fleet-agent exits %d", code)
    return code


def _fetch_secrets(config: AgentConfig) -> int:
    from fleet_agent.aws import fetch_secrets  # botocore only for this command

    try:
        written = fetch_secrets(config)
    except RuntimeError as exc:
        print(f"fleet-agent: fetch-secrets: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"fleet-agent: wrote {len(written)} secret file(s): {', '.join(map(str, written)) or 'none'}")
    return EXIT_OK


def _keys_line(config: AgentConfig) -> str:
    key_file = config.server.api_key_file
    if key_file is not None and not key_file.exists():
        return f"API keys from {key_file} (not there yet: fetch-secrets writes it at boot; run needs it)"
    return f"{len(config.server.api_keys)} API key(s)"


def describe(config: AgentConfig) -> str:
    engine = config.engine
    hooks = ", ".join(
        str(h.url) if isinstance(h, WebhookHook) else f"lifecycle {h.group_name}/{h.hook_name}"
        for h in config.drain.hooks
    )
    heartbeat = "off" if config.heartbeat.redis_url is None else f"every {config.heartbeat.period_s:g} s"
    store = config.model_store
    store_line = (
        "off"
        if store is None
        else f"JuiceFS:{store.volume} at {store.mount_point} ({store.mode}, "
        f"{'read-only' if store.read_only else 'read-write'}), model {store.model_dir}, "
        f"cache {store.cache_size_mib} MiB in {store.cache_dir}"
    )
    return "\n".join(
        [
            f"config ok: node {config.node.id} "
            f"({config.node.region}/{config.node.pool}, {config.node.accelerator})",
            f"  engine: {engine.kind} in {engine.mode} mode on 127.0.0.1:{engine.bind_port}, "
            f"models {', '.join(engine.models)}",
            f"  serving: {config.server.host}:{config.server.port}, {_keys_line(config)}",
            f"  preemption: {config.preemption.provider}; "
            f"drain up to {config.drain.timeout_s:g} s; hooks: {hooks or 'none'}",
            f"  heartbeat: {heartbeat}",
            f"  model store: {store_line}",
        ]
    )


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"
        )


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe request is noise
    logging.getLogger("uvicorn.error").setLevel(max(logging.INFO, root.level))


if __name__ == "__main__":
    main()
