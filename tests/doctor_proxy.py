"""A loopback reverse proxy with the faults `pushwire doctor` must find, each one switched on
by itself: it buffers or delays streamed responses, drops the WebSocket upgrade headers, closes
every connection after one request, or drops connections that stay idle."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

__all__ = ["FaultyProxy"]

_HOP_HEADERS = (b"upgrade:", b"connection:")


@dataclass
class Faults:
    #: Streamed responses (chunked or text/event-stream) are held until this many bytes are
    #: in, or the response ends, as a buffering proxy does; 0: passed on as they come.
    buffer_bytes: int = 0
    #: With `buffer_bytes`: the response head is held too (else it goes on at once and only
    #: the body waits).
    hold_head: bool = True
    #: Upgrade and Connection request headers are not passed on (an HTTP/1.0-style proxy).
    drop_upgrade: bool = False
    #: Each request goes up with `Connection: close`: one request per connection.
    close_connections: bool = False
    #: A connection with no byte either way for this many seconds is closed.
    idle_timeout: float | None = None
    #: Each piece of a streamed response is passed on this many seconds late (a proxy that
    #: flushes on a timer): events arrive, slowly.
    delay: float = 0.0


class FaultyProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port` with the given `faults`."""

    def __init__(self, target_port: int, faults: Faults) -> None:
        self.target_port = target_port
        self.faults = faults
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        last = [time.monotonic()]
        pumps: list[asyncio.Task[None]] = []
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            up_writer.write(self._rewrite(head))
            down = self._pump(up_reader, writer, last, self.faults.buffer_bytes)
            up = self._pump(reader, up_writer, last, None)
            pumps = [asyncio.ensure_future(up), asyncio.ensure_future(down)]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            writer.close()
            up_writer.close()
            self._tasks.discard(task)

    def _rewrite(self, head: bytes) -> bytes:
        lines = head.split(b"\r\n")
        upgrade = any(line.lower().startswith(b"upgrade:") for line in lines)
        if self.faults.drop_upgrade or (self.faults.close_connections and not upgrade):
            lines = [line for line in lines if not line.lower().startswith(_HOP_HEADERS)]
        if self.faults.close_connections and not upgrade:
            lines.insert(1, b"Connection: close")
        return b"\r\n".join(lines)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        last: list[float],
        buffer_bytes: int | None,
    ) -> None:
        """Copy `source` to `sink` until the end; when `buffer_bytes`, hold a streamed
        response's bytes (its head too, with `hold_head`) until that many are in or it ends."""
        held = bytearray()
        delay = self.faults.delay if buffer_bytes is not None else 0.0
        streamed: bool | None = None if buffer_bytes or delay else False
        while True:
            data = await self._read(source, last)
            if not data:
                break
            last[0] = time.monotonic()
            if streamed is None:
                held += data
                if b"\r\n\r\n" not in held:
                    continue
                head = bytes(held).split(b"\r\n\r\n")[0].lower()
                streamed = b"chunked" in head or b"text/event-stream" in head
                data, held = bytes(held), bytearray()
                if streamed and not delay and not self.faults.hold_head:
                    end = data.index(b"\r\n\r\n") + 4
                    sink.write(data[:end])
                    data = data[end:]
            if streamed and delay:
                await asyncio.sleep(delay)  # the fault itself: late, not lost
            elif streamed:
                held += data
                if len(held) < (buffer_bytes or 0):
                    continue
                data, held = bytes(held), bytearray()
            sink.write(data)
            await sink.drain()
        if held:
            sink.write(bytes(held))
        with contextlib.suppress(OSError):
            await sink.drain()

    async def _read(self, source: asyncio.StreamReader, last: list[float]) -> bytes:
        idle = self.faults.idle_timeout
        while True:
            try:
                return await asyncio.wait_for(source.read(65536), idle)
            except TimeoutError:
                assert idle is not None
                if time.monotonic() - last[0] >= idle:
                    return b""  # idle too long: the connection ends
