"""Just enough of the Redis protocol (RESP2) for the controller: TLS, AUTH as an ACL user, and plain
commands with bulk, integer, array and error replies. Standard library only, so the Lambda ships no
dependencies. Protocol reference: https://redis.io/docs/latest/develop/reference/protocol-spec/."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

Reply = bytes | int | str | list["Reply"] | None


class RedisError(RuntimeError):
    """An error reply (`-ERR ...`, `-NOPERM ...`), or the connection failing."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


class Redis:
    """One connection. ElastiCache's certificates chain to public roots: the default context verifies
    them and the host name."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        try:
            raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        except OSError as exc:
            raise RedisError(f"cannot connect to {endpoint.host}:{endpoint.port}: {exc}") from exc
        self._sock: socket.socket = raw
        try:
            if endpoint.tls:
                self._sock = ssl.create_default_context().wrap_socket(raw, server_hostname=endpoint.host)
            self._file = self._sock.makefile("rb")
            if endpoint.password is not None:
                auth = [endpoint.username] if endpoint.username else []
                self.call("AUTH", *auth, endpoint.password)
        except BaseException:
            raw.close()
            raise

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()

    def call(self, *args: str | bytes | int | float) -> Reply:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        frame = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        try:
            self._sock.sendall(frame)
            reply = self._read()
        except OSError as exc:
            raise RedisError(f"{args[0]}: {exc}") from exc
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _read(self) -> Reply | RedisError:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed mid-reply")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            return RedisError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(body)
            if count < 0:
                return None
            items: list[Reply] = []
            for _ in range(count):
                item = self._read()
                if isinstance(item, RedisError):
                    raise item
                items.append(item)
            return items
        raise RedisError(f"unexpected reply {line[:40]!r}")
