"""The native server's timers on a clock the test moves: header and idle timeouts, WebSocket
pings. A real server on a loopback socket, real clients; only the time is the test's."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from pushwire import App, Config, Hub
from pushwire.clock import ManualClock
from pushwire.server.connection import HttpConnection
from pushwire.server.listener import Server

pytestmark = pytest.mark.integration

WAIT = 5.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Served:
    clock: ManualClock
    server: Server

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        port = self.server.sockets[0].getsockname()[1]
        return await asyncio.open_connection("127.0.0.1", port)

    async def head_begun(self) -> None:
        """Until the server has read the start of a request head (its timeout is set)."""
        async with asyncio.timeout(WAIT):
            while not any(
                isinstance(connection, HttpConnection)
                and connection.parser is not None
                and connection.parser.in_head
                for connection in self.server.door.connections
            ):
                await asyncio.sleep(0)  # one loop turn: the server reads what arrived


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = ManualClock()
    config = Config(
        port=0,
        header_timeout=10.0,
        keepalive_timeout=30.0,
        ping_interval=20.0,
        ping_timeout=20.0,
    )
    hub = Hub(config=config, clock=clock)
    server = Server(App(hub), config, clock)
    await server.start()
    yield Served(clock, server)
    await server.shutdown()


async def answer(reader: asyncio.StreamReader) -> bytes:
    """One whole response to GET /healthz (its body is `ok\\n`)."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok\n"), WAIT)


async def closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), WAIT)


async def test_a_request_head_may_take_up_to_header_timeout(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(HEALTHZ[:10])
    await served.head_begun()
    served.clock.advance(9.9)
    writer.write(HEALTHZ[10:])
    assert (await answer(reader)).startswith(b"HTTP/1.1 200 OK")
    writer.close()


async def test_a_request_head_unfinished_at_header_timeout_gets_408(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(HEALTHZ[:10])
    await served.head_begun()
    served.clock.advance(10.0)
    rest = await closed(reader)
    assert rest.startswith(b"HTTP/1.1 408 Request Timeout")
    assert rest.endswith(b"request head not received within 10.0 s\n")


async def test_the_idle_timeout_counts_from_the_last_answer(served: Served) -> None:
    reader, writer = await served.connect()
    for _ in range(3):
        writer.write(HEALTHZ)
        assert (await answer(reader)).startswith(b"HTTP/1.1 200 OK")
        served.clock.advance(20.0)  # 60 s in all: past the first answer's timeout, not the last's
    served.clock.advance(10.0)
    assert await closed(reader) == b""


async def test_a_websocket_peer_that_does_not_answer_a_ping_is_dropped(served: Served) -> None:
    reader, writer = await served.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
    served.clock.advance(20.0)  # ping_interval: the sweep pings
    ping = await asyncio.wait_for(reader.readexactly(6), WAIT)
    assert ping[0] == 0x89 and ping[1] == 4  # an unmasked Ping with 4 bytes of payload
    served.clock.advance(20.0)  # ping_timeout, not yet over it
    served.clock.advance(5.0)  # the next sweep: no Pong came
    assert await closed(reader) == b""


SSE_REQUEST = b"GET /sse/room HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"


async def test_streams_get_their_heartbeats_from_one_sweep_not_a_timer_each(
    served: Served,
) -> None:
    clients = []
    for _ in range(2):
        reader, writer = await served.connect()
        writer.write(SSE_REQUEST)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)  # the stream began
        clients.append((reader, writer))
    streaming = [
        connection
        for connection in served.server.door.connections
        if isinstance(connection, HttpConnection) and connection.stream is not None
    ]
    assert len(streaming) == 2
    assert all(connection.timer is None for connection in streaming)
    for _ in range(2):
        served.clock.advance(25.0)  # heartbeat_interval (20 s) and the sweep's quarter of it
        for reader, _ in clients:
            await asyncio.wait_for(reader.readuntil(b": hb\n\n"), WAIT)
    for _, writer in clients:
        writer.close()


async def test_a_connection_that_never_sends_is_closed_after_keepalive_timeout(
    served: Served,
) -> None:
    # Its timeout is armed by the door a little after it connected (one timer for the
    # connections accepted meanwhile), and counts from when it connected.
    reader, writer = await served.connect()
    async with asyncio.timeout(WAIT):
        while not served.server.door.connections:
            await asyncio.sleep(0)
    served.clock.advance(29.9)
    assert not reader.at_eof()
    served.clock.advance(0.1)
    assert await closed(reader) == b""
    writer.close()


async def test_a_websocket_handshake_makes_no_timer_of_its_connection(served: Served) -> None:
    reader, writer = await served.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
    before = served.clock.pending
    served.clock.advance(0.5)  # the door arms the deferred timeouts: this one is not wanted
    # The deferral's own timer ran; the ping sweep's stays; no connection timer was made.
    assert served.clock.pending == before - 1
    writer.write(b"\x88\x80\x00\x00\x00\x00")  # a masked Close: the WebSocket still works
    assert (await asyncio.wait_for(reader.readexactly(2), WAIT))[0] == 0x88
    writer.close()
