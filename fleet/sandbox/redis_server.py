"""A real redis-server on 127.0.0.1 with ACL users as ElastiCache RBAC lays them out: the `default` user
needs a password (the gateway's token), the other clients are users of their own with the access strings
the program renders. It can be stopped and started again on the same port (a Redis outage and its end).

The sandbox runs the gateway's Redis of every region this way, and the model store's metadata Redis
(`noeviction`, as the store's parameter group sets it). TLS is off: ElastiCache's in-transit encryption is
the one thing of these servers the sandbox does not reproduce."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import redis

from fleet.sandbox.net import free_port, wait_for

DEFAULT_PASSWORD = "gateway-token-0123456789"


class RedisServer:
    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        password: str = DEFAULT_PASSWORD,
        options: Sequence[str] = (),
        log: Path | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(
                "redis-server is not installed: run scripts/setup.sh (apt-get install -y redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.password = password
        self.options = tuple(options)
        self.log = log
        self.users: dict[str, tuple[str, str]] = {}  # name -> (password, access string)
        self._process: subprocess.Popen[bytes] | None = None
        self.on_start: Callable[[int], None] | None = None  # told each new process id

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        sink = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly",
                 "no", "--dir", str(self.directory), *self.options],
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            if self.log is not None and not isinstance(sink, int):
                sink.close()
        if self.on_start is not None:
            self.on_start(self._process.pid)
        wait_for(lambda: redis.Redis(host=self.host, port=self.port).ping(), 10, "redis-server to answer")
        admin = redis.Redis(host=self.host, port=self.port)
        for name, (password, access) in self.users.items():
            admin.execute_command("ACL", "SETUSER", name, "reset", f">{password}", *access.split())
        # Last: from here on a client must authenticate, as on ElastiCache.
        admin.execute_command("ACL", "SETUSER", "default", f">{self.password}")
        admin.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def add_user(self, name: str, password: str, access: str) -> None:
        """An ACL user with an ElastiCache-style access string (kept across restarts)."""
        self.users[name] = (password, access)
        if self.running:
            with self.admin() as admin:
                admin.execute_command("ACL", "SETUSER", name, "reset", f">{password}", *access.split())

    def admin(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password)

    def url(self, user: str | None = None) -> str:
        return f"redis://{user + '@' if user else ''}{self.host}:{self.port}/0"


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
