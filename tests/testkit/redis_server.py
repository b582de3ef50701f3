"""A real redis-server on 127.0.0.1 for a test, with ACL users as ElastiCache RBAC lays them out: the
`default` user needs a password (the gateway's token), the other clients are users of their own with the
access strings the program renders. It can be stopped and started again on the same port."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from node_image.agent.tests.agent_testkit.net import free_port, wait_for

DEFAULT_PASSWORD = "gateway-token-0123456789"


class RedisServer:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(
                "redis-server is not installed: run scripts/setup.sh (apt-get install -y redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = free_port()
        self.users: dict[str, tuple[str, str]] = {}  # name -> (password, access string)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: redis.Redis(host=self.host, port=self.port).ping(), 10, "redis-server to answer")
        admin = redis.Redis(host=self.host, port=self.port)
        for name, (password, access) in self.users.items():
            admin.execute_command("ACL", "SETUSER", name, "reset", f">{password}", *access.split())
        # Last: from here on a client must authenticate, as on ElastiCache.
        admin.execute_command("ACL", "SETUSER", "default", f">{DEFAULT_PASSWORD}")
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
        return redis.Redis(host=self.host, port=self.port, password=DEFAULT_PASSWORD)

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
