"""The controller's readers on real sockets: an agent poll that is refused, hangs or answers; its own
Redis client (RESP2) against a real redis-server with ACL users; the cloud's states as the table reads
them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from testkit.redis_server import DEFAULT_PASSWORD, RedisServer, running_redis

from functions.fleet_controller.decision import Cloud, Pull
from functions.fleet_controller.resp import Endpoint, Redis, RedisError
from functions.fleet_controller.signals import GroupInstance, Instance, cloud_state, poll, poll_all
from node_image.agent.tests.agent_testkit.net import free_port


@pytest.fixture
def stopped_listener() -> Iterator[int]:
    """A socket that listens but whose owner never reads: what a SIGSTOPped agent looks like."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


class Readyz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ready": false, "state": "draining", "reasons": ["spot notice"]}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_closed_port_is_refused_a_stopped_agent_hangs_and_an_agent_answers(stopped_listener) -> None:
    assert poll("127.0.0.1", free_port(), 0.5).pull is Pull.REFUSED
    # A guard against waiting on the kernel's own timeouts (minutes), not a speed claim.
    started = time.monotonic()
    hung = poll("127.0.0.1", stopped_listener, 0.5)
    assert hung.pull is Pull.HUNG and time.monotonic() - started < 30
    server = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answer = poll("127.0.0.1", server.server_address[1], 0.5)
    finally:
        server.shutdown()
        server.server_close()
    assert (answer.pull, answer.status, answer.state, answer.ready) == (Pull.ANSWERS, 503, "draining", False)


class SilentListener:
    """Accepts connections and never answers; counts how many are open at once."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port: int = self.sock.getsockname()[1]
        self.open = self.most_open = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with connection:
            while connection.recv(4096):  # until the poller gives up and closes
                pass
        with self._lock:
            self.open -= 1


def test_polls_run_together_so_a_tick_takes_one_timeout() -> None:
    """Polled one after another, each would time out before the next connects: one open at a time."""
    listener = SilentListener()
    targets: dict[str, tuple[str, int] | None] = {f"i-{n}": ("127.0.0.1", listener.port) for n in range(6)}
    targets["i-none"] = None
    try:
        results = poll_all(targets, 5.0)
    finally:
        listener.sock.close()
    assert {k: r.pull for k, r in results.items()} == {
        **{f"i-{n}": Pull.HUNG for n in range(6)},
        "i-none": Pull.UNKNOWN,
    }
    assert listener.most_open == 6


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        server.add_user("reader", "reader-password-0123", "on ~fleet:* -@all +get +set")
        yield server


def test_the_resp_client_authenticates_as_an_acl_user_and_reports_refusals(redis_server) -> None:
    endpoint = Endpoint(redis_server.host, redis_server.port, False, "reader", "reader-password-0123")
    with Redis(endpoint, timeout=2) as r:
        assert r.call("SET", "fleet:k", "v", "NX", "PX", 5000) == "OK"
        assert r.call("SET", "fleet:k", "w", "NX", "PX", 5000) is None  # the slot is taken
        assert r.call("GET", "fleet:k") == b"v"
        assert r.call("GET", "fleet:missing") is None
        with pytest.raises(RedisError, match="NOPERM"):
            r.call("GET", "litellm:key")
    with pytest.raises(RedisError, match="WRONGPASS"):
        Redis(
            Endpoint(redis_server.host, redis_server.port, False, "reader", "wrong-password-0123"), timeout=2
        )
    # The gateway's way: a password alone is the `default` user.
    with Redis(Endpoint(redis_server.host, redis_server.port, False, None, DEFAULT_PASSWORD), timeout=2) as r:
        r.call("ZADD", "z", 1.5, "a")
        assert r.call("ZRANGE", "z", 0, -1, "WITHSCORES") == [b"a", b"1.5"]


def test_a_redis_that_is_down_is_an_error_not_a_hang() -> None:
    with pytest.raises(RedisError):
        Redis(Endpoint("127.0.0.1", free_port(), False), timeout=1)


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()


def instance(state: str = "running", age: float = 3600) -> Instance:
    return Instance("i-1", state, "10.0.0.1", NOW - age)


@pytest.mark.parametrize(
    ("member", "ec2", "cloud"),
    [
        (GroupInstance("i-1", "InService", "Healthy"), instance(), Cloud.RUNNING),
        (GroupInstance("i-1", "InService", "Unhealthy"), instance(), Cloud.LEAVING),  # being replaced
        (
            GroupInstance("i-1", "Terminating:Wait", "Healthy"),
            instance(),
            Cloud.LEAVING,
        ),  # its lifecycle hook
        (GroupInstance("i-1", "Standby", "Healthy"), instance(), Cloud.LEAVING),
        (GroupInstance("i-1", "Pending:Wait", "Healthy"), instance(), Cloud.STARTING),
        (GroupInstance("i-1", "InService", "Healthy"), instance(age=60), Cloud.STARTING),  # boot grace
        (GroupInstance("i-1", "InService", "Healthy"), instance("stopping"), Cloud.LEAVING),
        (GroupInstance("i-1", "InService", "Healthy"), instance("terminated"), Cloud.GONE),
        (GroupInstance("i-1", "InService", "Healthy"), None, Cloud.GONE),  # EC2 no longer knows it
        (None, instance(), Cloud.RUNNING),
    ],
)
def test_cloud_states(member, ec2, cloud) -> None:
    assert cloud_state(member, ec2, NOW, boot_grace_s=600) is cloud
