"""What is unfinished must progress: a request body, a WebSocket message or a TCP frame begun
brings at least `min_receive_rate` bytes a second over each `receive_window`, or it is cut
(HTTP 408, WebSocket 1008, TCP `bad_request` + close) and its buffer freed. Before, a client
could send all of a large body or frame but its last byte and hold it for up to 40 s.

A real server on loopback sockets, on a clock the test moves: 1,000 bytes a second over
windows of 1 s. At the bound (1,000 bytes in each window) the message gets through; one byte
short in one window and it is cut.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from pushwire import App, Config, Hub
from pushwire.clock import ManualClock
from pushwire.server.listener import Server
from tests.wire_clients import client_frame

pytestmark = pytest.mark.integration

WAIT = 5.0
RATE = 1000  # bytes a second, over windows of 1 s
SIZE = 3000  # the body, message or frame: its first 1,000 bytes, then a window per 1,000


@dataclass
class Served:
    clock: ManualClock
    server: Server

    async def connect(
        self, *, tcp: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        listening = self.server.tcp_servers[0].sockets if tcp else self.server.sockets
        return await asyncio.open_connection("127.0.0.1", listening[0].getsockname()[1])

    async def received(self, total: int) -> None:
        """Until the server's one connection has read `total` bytes from its socket."""
        async with asyncio.timeout(WAIT):
            while not any(
                getattr(connection, "received", -1) == total
                for connection in self.server.door.connections
            ):
                await asyncio.sleep(0)

    async def begin(self, writer: asyncio.StreamWriter, data: bytes, total: int) -> None:
        """Send `data`, which begins the body, message or frame (its bytes count for no
        window); the server has read `total` bytes once it arrived."""
        writer.write(data)
        await self.received(total)

    async def window_holds(self, count: int) -> None:
        """Until the server's one WebSocket holds `count` bytes in the receive window of its
        unfinished message (it counts from after the bytes that began the message)."""
        async with asyncio.timeout(WAIT):
            while not any(
                getattr(connection, "window", -1) == count
                for connection in self.server.door.connections
            ):
                await asyncio.sleep(0)

    async def message_window(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Send `data`, the next bytes of a WebSocket's unfinished message, once it has
        arrived let the receive window pass."""
        writer.write(data)
        await self.window_holds(len(data))
        self.clock.advance(1.0)

    async def one_window(self, writer: asyncio.StreamWriter, data: bytes, total: int) -> None:
        """Send `data` (the server has read `total` bytes once it arrived), then let the
        receive window pass."""
        await self.begin(writer, data, total)
        self.clock.advance(1.0)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = ManualClock()
    config = Config(port=0, tcp_port=0, min_receive_rate=RATE, receive_window=1.0)
    server = Server(App(Hub(config=config, clock=clock)), config, clock)
    await server.start()
    yield Served(clock, server)
    await server.shutdown()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), WAIT)


# -- HTTP request bodies -------------------------------------------------------------------------


def publish_head(size: int) -> bytes:
    return (
        b"POST /api/publish/room HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )


async def test_a_body_that_brings_the_minimum_in_each_window_is_served(served: Served) -> None:
    reader, writer = await served.connect()
    head = publish_head(SIZE)
    await served.begin(writer, head, len(head))
    await served.one_window(writer, b"a" * RATE, len(head) + RATE)
    await served.one_window(writer, b"a" * RATE, len(head) + 2 * RATE)
    writer.write(b"a" * RATE)
    answer = await asyncio.wait_for(reader.readuntil(b"}"), WAIT)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    writer.close()


async def test_a_body_one_byte_short_in_a_window_gets_408(served: Served) -> None:
    reader, writer = await served.connect()
    head = publish_head(SIZE)
    await served.begin(writer, head, len(head))
    await served.one_window(writer, b"a" * RATE, len(head) + RATE)
    await served.one_window(writer, b"a" * (RATE - 1), len(head) + 2 * RATE - 1)
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert answer.endswith(b"request body arrived slower than 1000 bytes/s (999 bytes in 1.0 s)\n")
    assert served.server.open_connections == 0


async def test_a_body_that_stalls_is_cut_after_one_window_not_body_timeout(served: Served) -> None:
    reader, writer = await served.connect()
    head = publish_head(SIZE)
    await served.one_window(writer, head + b"a" * (SIZE - 1), len(head) + SIZE - 1)
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")


# -- WebSocket messages --------------------------------------------------------------------------


async def websocket(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """An open raw WebSocket on /echo; how many bytes the server read for the handshake."""
    reader, writer = await served.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101 ")
    return reader, writer, 0  # the WebSocket counts from the first byte after the upgrade


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragments"])
async def test_a_websocket_message_at_the_minimum_rate_gets_through(
    served: Served, fragmented: bool
) -> None:
    reader, writer, _ = await websocket(served)
    if fragmented:
        parts = [client_frame(0x2, b"a" * (RATE - 8), fin=False)]
        parts += [client_frame(0x0, b"a" * (RATE - 8), fin=False) for _ in range(2)]
        parts += [client_frame(0x0, b"a" * (RATE - 8))]
        message_size = 4 * (RATE - 8)
    else:
        whole = client_frame(0x2, b"a" * SIZE)  # 8 bytes of header and mask, then the payload
        parts = [whole[:RATE], whole[RATE : 2 * RATE], whole[2 * RATE : 3 * RATE]]
        parts.append(whole[3 * RATE :])
        message_size = SIZE
    writer.write(parts[0])
    await served.window_holds(0)  # the message began
    for part in parts[1:-1]:
        await served.message_window(writer, part)
    writer.write(parts[-1])
    header = await asyncio.wait_for(reader.readexactly(4), WAIT)
    assert header == struct.pack("!BBH", 0x82, 126, message_size)  # the echo
    writer.close()


async def test_a_websocket_message_one_byte_short_in_a_window_is_closed_1008(
    served: Served,
) -> None:
    reader, writer, _ = await websocket(served)
    whole = client_frame(0x2, b"a" * SIZE)
    writer.write(whole[:RATE])
    await served.window_holds(0)  # the message began
    await served.message_window(writer, whole[RATE : 2 * RATE])
    await served.message_window(writer, whole[2 * RATE : 3 * RATE - 1])
    close = await until_closed(reader)
    reason = b"message arrived slower than 1000 bytes/s"
    assert close == struct.pack("!BBH", 0x88, 2 + len(reason), 1008) + reason


# -- TCP frames ---------------------------------------------------------------------------------


def tcp_hello(size: int) -> bytes:
    """A frame of `size` bytes in all holding a hello (padded with JSON whitespace)."""
    payload = b'{"type":"hello"}'.ljust(size - 5)
    return struct.pack("!I", len(payload) + 1) + b"\x01" + payload


async def read_tcp(reader: asyncio.StreamReader) -> dict[str, object]:
    (length,) = struct.unpack("!I", await asyncio.wait_for(reader.readexactly(4), WAIT))
    envelope: dict[str, object] = json.loads((await reader.readexactly(length))[1:])
    return envelope


async def test_a_tcp_frame_at_the_minimum_rate_gets_through(served: Served) -> None:
    reader, writer = await served.connect(tcp=True)
    frame = tcp_hello(SIZE)
    await served.begin(writer, frame[:RATE], RATE)
    await served.one_window(writer, frame[RATE : 2 * RATE], 2 * RATE)
    writer.write(frame[2 * RATE :])
    assert (await read_tcp(reader))["type"] == "welcome"
    writer.close()


async def test_a_tcp_frame_one_byte_short_in_a_window_is_refused(served: Served) -> None:
    reader, writer = await served.connect(tcp=True)
    frame = tcp_hello(SIZE)
    await served.begin(writer, frame[:RATE], RATE)
    await served.one_window(writer, frame[RATE : 2 * RATE - 1], 2 * RATE - 1)
    assert await read_tcp(reader) == {
        "type": "error",
        "code": "bad_request",
        "message": "incomplete frame: 1999 bytes, then 999 bytes in 1.0 s (under 1000 bytes/s)",
    }
    assert (await read_tcp(reader))["type"] == "close"
    assert await until_closed(reader) == b""
