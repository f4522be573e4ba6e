"""The last resort (pushwire.guard): an exception nobody expected in one connection's callback
closes that connection only (HTTP 500, WebSocket 1011, TCP `close` 1011) and is logged in one
line, rate-limited; the server and a bystander carry on.

No request makes pushwire raise that way any more (tests/integration/test_client_numbers.py
has the ones that did), so the exception comes from a test-only app: an `App` whose request
handler and message receivers raise on `boom`. Nothing like it exists in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection, connect

from pushwire import App, Config, Hub
from pushwire.core.transport import Receiver, Transport
from pushwire.guard import BURST, FAILURES, LogBucket
from pushwire.message import Data
from pushwire.server.listener import Server
from pushwire.web import Answer, Request, WebSocketAccept

pytestmark = pytest.mark.integration

WAIT = 5.0


class Boom(RuntimeError):
    """What the test app raises: no pushwire error, no answer planned for it."""


class _Exploding:
    """A receiver that raises on the message `boom`, and passes everything else on."""

    def __init__(self, inner: Receiver) -> None:
        self.inner = inner

    def open(self) -> Awaitable[None] | None:
        return self.inner.open()

    def receive(self, data: Data) -> None:
        if data in ("boom", b"boom") or (isinstance(data, str) and '"boom"' in data):
            raise Boom("a receiver failed")
        self.inner.receive(data)

    def closed(self, code: int, reason: str, *, by_client: bool) -> None:
        self.inner.closed(code, reason, by_client=by_client)


class ExplodingApp(App):
    """The built-in app, but `GET /boom` and a `boom` message raise (test only)."""

    def handle_http(self, request: Request) -> Answer:
        if request.path == "/boom":
            raise Boom("a request handler failed")
        return super().handle_http(request)

    def websocket(self, request: Request) -> WebSocketAccept:
        accept = super().websocket(request)
        make = accept.make_receiver

        def make_receiver(transport: Transport) -> Receiver:
            return _Exploding(make(transport))

        return WebSocketAccept(accept.subprotocol, accept.envelope, make_receiver)

    def tcp_receiver(self, transport: Transport, remote: str | None) -> Receiver:
        return _Exploding(super().tcp_receiver(transport, remote))


@dataclass
class Served:
    server: Server
    hub: Hub

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def tcp_port(self) -> int:
        port: int = self.server.tcp_servers[0].sockets[0].getsockname()[1]
        return port

    async def bystander(self) -> ClientConnection:
        """A raw WebSocket subscribed to channel `news`."""
        return await connect(f"ws://127.0.0.1:{self.port}/ws/news")

    async def still_delivers(self, bystander: ClientConnection, text: str) -> None:
        await self.hub.publish("news", text)
        assert await asyncio.wait_for(bystander.recv(), WAIT) == text


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    config = Config(port=0, tcp_port=0)
    hub = Hub(config=config)
    server = Server(ExplodingApp(hub), config)
    await server.start()
    # Each test starts with a full bucket of log lines.
    FAILURES.bucket = LogBucket(FAILURES.bucket.clock)
    FAILURES.suppressed = 0
    yield Served(server, hub)
    await server.shutdown()


async def raw_http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), WAIT)  # until the server closes
    finally:
        writer.close()


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pushwire.guard" and r.levelno >= logging.ERROR]


async def test_a_request_handler_that_raises_gets_500_and_its_connection_closes(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    bystander = await served.bystander()
    answer = await raw_http(served.port, b"GET /boom HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert answer.endswith(b"\r\n\r\ninternal error\n")  # no detail goes to the client
    [line] = failure_lines(caplog)
    assert line.getMessage().startswith("http connection from 127.0.0.1:")
    assert line.getMessage().endswith(" failed: Boom: a request handler failed")
    assert line.exc_info is None  # one line: the traceback is at debug level only
    healthz = await raw_http(
        served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert healthz.startswith(b"HTTP/1.1 200 OK")
    await served.still_delivers(bystander, "after the 500")
    await bystander.close()


async def test_requests_before_the_one_that_raises_are_answered_first(served: Served) -> None:
    pipelined = (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /boom HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    answer = await raw_http(served.port, pipelined)
    assert answer.count(b"HTTP/1.1 ") == 2
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 500 Internal Server Error" in answer


async def test_a_flood_of_failures_logs_a_burst_then_one_line_a_second(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    before = FAILURES.count
    flood = 3 * BURST
    answers = await asyncio.gather(
        *(raw_http(served.port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(flood))
    )
    assert all(a.startswith(b"HTTP/1.1 500 ") for a in answers)
    assert FAILURES.count - before == flood
    # At most the burst at once, perhaps one more as a second passed; the rest is counted.
    assert BURST <= len(failure_lines(caplog)) <= BURST + 2
    assert FAILURES.suppressed >= flood - BURST - 2


async def test_a_websocket_receiver_that_raises_closes_that_websocket_with_1011(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    bystander = await served.bystander()
    victim = await connect(f"ws://127.0.0.1:{served.port}/ws/news")
    await victim.send("boom")
    await asyncio.wait_for(victim.wait_closed(), WAIT)
    assert victim.close_code == 1011
    assert victim.close_reason == "internal error"
    [line] = failure_lines(caplog)
    assert "websocket connection from 127.0.0.1:" in line.getMessage()
    await served.still_delivers(bystander, "after the 1011")
    await bystander.close()


def tcp_frame(envelope: dict[str, object]) -> bytes:
    payload = json.dumps(envelope).encode()
    return struct.pack("!I", len(payload) + 1) + b"\x01" + payload


async def read_tcp_frame(reader: asyncio.StreamReader) -> dict[str, object]:
    (length,) = struct.unpack("!I", await asyncio.wait_for(reader.readexactly(4), WAIT))
    payload = await asyncio.wait_for(reader.readexactly(length), WAIT)
    result: dict[str, object] = json.loads(payload[1:])
    return result


async def test_a_tcp_receiver_that_raises_closes_that_connection_with_1011(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    bystander = await served.bystander()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.tcp_port)
    writer.write(tcp_frame({"type": "boom"}))
    close = await read_tcp_frame(reader)
    assert close == {"type": "close", "code": 1011, "reason": "internal error"}
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    writer.close()
    [line] = failure_lines(caplog)
    assert line.getMessage().startswith("tcp connection from 127.0.0.1:")
    await served.still_delivers(bystander, "after the tcp close")
    await bystander.close()
