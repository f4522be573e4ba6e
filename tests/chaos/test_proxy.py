"""The fault proxy on its own, in front of two tiny loopback backends: each fault does what
the chaos runs count on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.chaos.proxy import FaultProxy

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0


class Backend:
    """Answers each connection with its name, then echoes; keeps what it received."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.received = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.name)
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [Backend(b"A"), Backend(b"B")]
    for backend in started:
        await backend.start()
    yield started
    for backend in started:
        assert backend.server is not None
        backend.server.close()


@pytest.fixture
async def proxy(backends: list[Backend]) -> AsyncIterator[FaultProxy]:
    instance = FaultProxy([("127.0.0.1", b.port) for b in backends], seed=7)
    await instance.start()
    yield instance
    await instance.stop()


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def greeting(proxy: FaultProxy) -> bytes:
    reader, writer = await connect(proxy)
    try:
        async with asyncio.timeout(WAIT):
            return await reader.readexactly(1)
    finally:
        writer.close()


async def test_connections_alternate_between_the_backends(proxy: FaultProxy) -> None:
    assert [await greeting(proxy) for _ in range(4)] == [b"A", b"B", b"A", b"B"]


async def test_a_backend_taken_down_gets_nothing_until_it_is_back(proxy: FaultProxy) -> None:
    proxy.take_down(0)
    assert [await greeting(proxy) for _ in range(3)] == [b"B", b"B", b"B"]
    proxy.bring_up(0)
    assert {await greeting(proxy) for _ in range(2)} == {b"A", b"B"}


async def test_taking_a_backend_down_resets_its_connections(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await reader.readexactly(1) == b"A"
    proxy.take_down(0)
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(WAIT):
            await reader.read(1)
    writer.close()


async def test_reset_all_sends_a_reset(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await reader.readexactly(1) == b"A"
    assert proxy.reset_all() == 1
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(WAIT):
            await reader.read(1)
    writer.close()


async def test_truncating_gives_a_prefix_then_the_end(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    assert await reader.readexactly(1) == b"A"
    proxy.truncating = True
    writer.write(b"x" * 1000)
    async with asyncio.timeout(WAIT):
        rest = await reader.read()  # up to the end of the stream, no reset
    assert len(rest) < 1000
    assert proxy.counts["truncated"] == 1
    writer.close()


async def test_a_stall_delays_and_loses_nothing(proxy: FaultProxy, backends: list[Backend]) -> None:
    reader, writer = await connect(proxy)
    assert await reader.readexactly(1) == b"A"
    proxy.stall()
    writer.write(b"held")
    await asyncio.sleep(0.2)  # the time a stall lasts: nothing may pass meanwhile
    assert backends[0].received == b""
    proxy.resume()
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(4) == b"held"
    writer.close()


async def test_a_black_hole_swallows_bytes_then_resets(
    proxy: FaultProxy, backends: list[Backend]
) -> None:
    reader, writer = await connect(proxy)
    assert await reader.readexactly(1) == b"A"
    proxy.blackhole()
    writer.write(b"gone")
    late_reader, late_writer = await connect(proxy)  # accepted, never answered
    await asyncio.sleep(0.2)
    proxy.end_blackhole()
    for stream in (reader, late_reader):
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(WAIT):
                await stream.read(1)
    assert backends[0].received == b""
    writer.close()
    late_writer.close()


async def test_websocket_upgrades_can_be_refused(proxy: FaultProxy) -> None:
    proxy.refuse_upgrade = True
    reader, writer = await connect(proxy)
    writer.write(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(WAIT):
            await reader.read(1)
    writer.close()
    reader, writer = await connect(proxy)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(1) in (b"A", b"B")
    writer.close()


async def test_an_answer_can_be_lost_after_the_request_arrived(
    proxy: FaultProxy, backends: list[Backend]
) -> None:
    reader, writer = await connect(proxy)
    assert await reader.readexactly(1) == b"A"
    proxy.cut_answer_after = b"do it"
    writer.write(b"do it")
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(WAIT):
            await reader.read(1)
    assert backends[0].received == b"do it"
    assert proxy.counts["cut answers"] == 1
    writer.close()


def test_only_loopback_backends() -> None:
    with pytest.raises(ValueError, match="only forwards to loopback"):
        FaultProxy([("192.0.2.1", 80)])
