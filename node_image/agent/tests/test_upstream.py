"""The proxy's HTTP/1.1 client against raw loopback servers that frame responses every legal way,
close idle keep-alive connections, and break off mid-body."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from fleet_agent.upstream import UpstreamError, UpstreamPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def with_server(handler: Handler, scenario: Callable[[UpstreamPool], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool("127.0.0.1", port, connect_timeout=2, read_timeout=5)
    try:
        await scenario(pool)
    finally:
        await pool.aclose()
        server.close()


async def collect(pool: UpstreamPool, body: bytes = b"{}") -> tuple[int, list[bytes]]:
    response = await pool.request("POST", "/v1/completions", [(b"content-type", b"application/json")], body)
    pieces = [piece async for piece in response.body()]
    await response.aclose()
    return response.status, pieces


def test_chunked_and_content_length_bodies_on_one_keep_alive_connection() -> None:
    connections = 0
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        requests.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
        )
        for event in (b"data: 1\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x;ext=1\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\nx-trailer: t\r\n\r\n")
        requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        await reader.read()  # until the client closes

    async def scenario(pool: UpstreamPool) -> None:
        assert await collect(pool, b'{"a":1}') == (200, [b"data: 1\n\n", b"data: [DONE]\n\n"])
        status, pieces = await collect(pool)
        assert (status, b"".join(pieces)) == (201, b"hello")

    asyncio.run(with_server(handler, scenario))
    assert connections == 1  # the second request reused the first connection
    assert requests[0].startswith(b"POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"content-length: 7\r\n" in requests[0] and requests[0].endswith(b'\r\n\r\n{"a":1}')


def test_idle_connection_closed_by_the_engine_is_replaced_without_failing() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive announced, then closed anyway (an idle timeout, a restart)

    async def scenario(pool: UpstreamPool) -> None:
        for _ in range(3):
            assert await collect(pool) == (200, [b"ok"])
            await asyncio.sleep(0.05)

    asyncio.run(with_server(handler, scenario))
    assert connections == 3


def test_connection_close_and_read_until_eof_bodies_are_not_reused() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def scenario(pool: UpstreamPool) -> None:
        for _ in range(2):
            status, pieces = await collect(pool)
            assert (status, b"".join(pieces)) == (200, b"all of it")

    asyncio.run(with_server(handler, scenario))
    assert connections == 2


def test_a_response_broken_off_mid_body_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        await writer.drain()
        writer.close()

    async def scenario(pool: UpstreamPool) -> None:
        with pytest.raises(UpstreamError, match="engine closed the connection mid-chunk"):
            await collect(pool)

    asyncio.run(with_server(handler, scenario))


def test_nothing_listening_is_an_error() -> None:
    async def scenario() -> None:
        pool = UpstreamPool("127.0.0.1", 9, connect_timeout=1, read_timeout=1)
        with pytest.raises(UpstreamError, match="cannot connect"):
            await pool.request("GET", "/health", [], b"")

    asyncio.run(scenario())
