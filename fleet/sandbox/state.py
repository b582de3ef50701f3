"""The sandbox's one directory: everything it writes (the render it runs, secrets it made, every
process's log, the nodes' mounts and caches, the event log) and `state.json`, which says whether a
sandbox is up there and how to reach it.

Every process the sandbox starts carries `FLEET_SANDBOX_DIR=<this directory>` in its environment, so
`down` can find and end exactly those (and no one else's), even after a crash of the supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER_ENV = "FLEET_SANDBOX_DIR"
DEFAULT_DIR = ".fleet-sandbox"


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "supervisor.log"

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def write(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(partial, self.state_file)

    def secrets(self) -> dict[str, str]:
        """The passwords and keys this sandbox made (stable across `up`s of one directory)."""
        try:
            return json.loads(self.secrets_file.read_text())
        except (OSError, ValueError):
            return {}

    def secret(self, name: str, prefix: str = "") -> str:
        known = self.secrets()
        if name not in known:
            known[name] = prefix + secrets.token_hex(24)
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(known, handle, indent=2, sort_keys=True)
        return known[name]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    return True


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def record_pid(root: Path, pid: int) -> None:
    """A child whose environment cannot be read back (redis-server writes its process title over it)."""
    with (root / "pids").open("a") as handle:
        handle.write(f"{pid} {command_line(pid)}\n")


def marked_processes(root: Path) -> list[int]:
    """Every live process started by the sandbox in `root`: its marker in their environment, or recorded
    with the same command line."""
    wanted = f"{MARKER_ENV}={root.resolve()}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if wanted in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                found.add(int(entry.name))
    with contextlib.suppress(OSError):
        for line in (root / "pids").read_text().splitlines():
            pid, _, command = line.partition(" ")
            if pid_alive(int(pid)) and command and command_line(int(pid)).startswith(command.split()[0]):
                found.add(int(pid))
    return sorted(found)


def end_processes(pids: list[int], grace: float = 5.0) -> list[int]:
    """SIGTERM each (by id), SIGKILL what is left after `grace`; the ids that needed the SIGKILL."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    stubborn = [p for p in pids if pid_alive(p)]
    for pid in stubborn:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a stopped process (a node-hang drill) takes SIGKILL, but say so
            os.kill(pid, signal.SIGKILL)
    return stubborn


@contextlib.contextmanager
def lock(root: Path) -> Iterator[None]:
    """One `up` or `down` at a time per directory."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
