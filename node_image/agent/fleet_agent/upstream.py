"""A lean HTTP/1.1 client for the one engine on 127.0.0.1: the proxy's hot path.

httpx serves the agent everywhere else, but under concurrency its pool costs more CPU per request
than the engine's own tiny generations on a small node (measured in bench/agent_proxy.py: p99 near
a second at 32 concurrent). This client does only what a loopback proxy needs: keep-alive
connections reused last-in-first-out, a request written in one send, the response head parsed
once, and the body handed on as it arrives, de-framed from Content-Length or chunked encoding.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

HEAD_LIMIT = 64 * 1024
READ_SIZE = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamError(Exception):
    """The engine could not be reached, or broke off a response."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """Status and headers are read; `body()` yields the payload as the engine sends it."""

    def __init__(
        self,
        pool: UpstreamPool,
        connection: _Connection,
        status: int,
        headers: list[tuple[bytes, bytes]],
        method: str,
    ) -> None:
        self.status = status
        self.headers = headers  # names lower-cased
        self._pool = pool
        self._connection: _Connection | None = connection
        self._keep_alive = True
        self._length: int | None = None
        self._chunked = False
        for name, value in headers:
            if name == b"content-length":
                self._length = int(value)
            elif name == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
            elif name == b"connection" and b"close" in value.lower():
                self._keep_alive = False
        if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            self._length = 0
        elif self._length is None and not self._chunked:
            self._keep_alive = False  # the body runs until the engine closes the connection

    @property
    def content_length(self) -> int | None:
        return self._length

    async def body(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        reader = connection.reader
        try:
            if self._chunked:
                async for piece in self._chunks(reader):
                    yield piece
            elif self._length is not None:
                left = self._length
                while left:
                    piece = await reader.read(min(left, READ_SIZE))
                    if not piece:
                        raise UpstreamError("engine closed the connection mid-response")
                    left -= len(piece)
                    yield piece
            else:
                while piece := await reader.read(READ_SIZE):
                    yield piece
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise UpstreamError(f"engine broke off the response: {exc!r}") from exc
        self._release(reusable=self._keep_alive)

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                    pass
                return
            while size:
                piece = await reader.read(min(size, READ_SIZE))
                if not piece:
                    raise UpstreamError("engine closed the connection mid-chunk")
                size -= len(piece)
                yield piece
            await reader.readexactly(2)  # the chunk's CRLF

    async def aclose(self) -> None:
        """Give the connection back, or close it when the body was not read to its end."""
        self._release(reusable=False)

    def _release(self, *, reusable: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection, reusable)


class UpstreamPool:
    def __init__(self, host: str, port: int, *, connect_timeout: float, read_timeout: float) -> None:
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}".encode()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[_Connection] = []

    async def request(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamResponse:
        head = [f"{method} {target} HTTP/1.1\r\n".encode(), b"host: ", self._host_header, b"\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        if body or method in ("POST", "PUT", "PATCH"):
            head += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        head.append(b"\r\n")
        payload = b"".join(head) + body
        while self._idle:
            connection = self._idle.pop()
            if not connection.usable():
                connection.close()
                continue
            try:
                return await self._exchange(connection, payload, method)
            except _StaleConnection:
                continue  # the engine closed it while it sat idle: nothing was sent or processed
        return await self._exchange(await self._connect(), payload, method, fresh=True)

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and connection.usable():
            self._idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=HEAD_LIMIT), self._connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to the engine: {exc!r}") from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, connection: _Connection, payload: bytes, method: str, *, fresh: bool = False
    ) -> UpstreamResponse:
        try:
            connection.writer.write(payload)
            head = await asyncio.wait_for(connection.reader.readuntil(b"\r\n\r\n"), self._read_timeout)
        except asyncio.IncompleteReadError as exc:
            connection.close()
            if not fresh and not exc.partial:
                raise _StaleConnection from exc
            raise UpstreamError("engine closed the connection before answering") from exc
        except (OSError, TimeoutError, asyncio.LimitOverrunError) as exc:
            connection.close()
            raise UpstreamError(f"engine did not answer: {exc!r}") from exc
        except asyncio.CancelledError:
            connection.close()  # a half-sent request leaves the connection unusable
            raise
        lines = head[:-4].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError) as exc:
            connection.close()
            raise UpstreamError(f"engine answered no HTTP status line: {lines[0][:80]!r}") from exc
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        return UpstreamResponse(self, connection, status, headers, method)


class _StaleConnection(Exception):
    pass
