"""The soak's well-behaved subscribers, light enough to hold thousands in one process.

Raw WebSocket (`/ws/<channel>`) and raw SSE (`/sse/<channel>`) subscribers are asyncio
protocols written from RFC 6455 and the SSE spec (a few hundred bytes each); subscribers on
the envelope protocol's transports are pushwire's own Python client. Each keeps a `Tally` of
the sequence numbers it received: every published body is `<seq>` or `<seq>:<padding>`, one
sequence per channel from 1, so a subscriber that joined before the first publish must see
1, 2, 3, ... and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Final

from pushwire.client import Failure, Gap, Message, connect

__all__ = ["RawSse", "RawWebSocket", "Tally", "client_subscriber", "open_raw", "seq_of"]

#: Bytes read at most before a response head must be complete.
MAX_HEAD: Final = 16 * 1024


def seq_of(body: bytes) -> int:
    """The sequence number a soak message starts with."""
    head, _, _ = body.partition(b":")
    return int(head)


@dataclass
class Tally:
    """What one subscriber of one channel received, against what it should have."""

    channel: str
    label: str
    last: int = 0
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    gaps: int = 0  # reported losses (the envelope protocol's `gap`)
    failures: int = 0
    closed: str | None = None  # why the server closed it, when it did
    reconnections: int = 0

    def see(self, seq: int) -> None:
        if seq <= self.last:
            self.duplicates += 1
            return
        self.missing += seq - self.last - 1
        self.last = seq
        self.received += 1

    def finish(self, published: int) -> None:
        """The publisher's last sequence: what is still missing now is lost."""
        if published > self.last:
            self.missing += published - self.last
            self.last = published


@dataclass
class _Base(asyncio.Protocol):
    tally: Tally
    transport: asyncio.Transport | None = None
    buffer: bytearray = field(default_factory=bytearray)
    head_done: bool = False
    opened: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    lost: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request())

    def request(self) -> bytes:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.head_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._fail("response head too long")
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
            if status != self.expected_status():
                self._fail(f"answered {head[:80]!r}")
                return
            self.head_done = True
            if not self.opened.done():
                self.opened.set_result(None)
        self.consume()

    def expected_status(self) -> bytes:
        raise NotImplementedError

    def consume(self) -> None:
        raise NotImplementedError

    def _fail(self, why: str) -> None:
        self.tally.closed = self.tally.closed or why
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed = self.tally.closed or f"connection lost ({exc or 'eof'})"
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.tally.closed))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class RawWebSocket(_Base):
    """A `/ws/<channel>` subscriber: answers pings, counts text frames, notes the close."""

    host: str = "127.0.0.1"

    def request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET /ws/{self.tally.channel} HTTP/1.1\r\nHost: {self.host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def expected_status(self) -> bytes:
        return b"101"

    def consume(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = struct.unpack_from("!H", buffer, 2)[0]
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = struct.unpack_from("!Q", buffer, 2)[0]
                start = 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode in (1, 2):
                self.tally.see(seq_of(payload))
            elif opcode == 9 and self.transport is not None:
                self.transport.write(_masked(0xA, payload))
            elif opcode == 8:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self.tally.closed = f"close {code}"
                if self.transport is not None:
                    self.transport.write(_masked(0x8, payload[:2]))
                    self.transport.close()
                return


@dataclass
class RawSse(_Base):
    """A `/sse/<channel>` subscriber: HTTP/1.1 chunked, then events of `data:` lines."""

    host: str = "127.0.0.1"
    chunked: bytearray = field(default_factory=bytearray)
    data: list[bytes] = field(default_factory=list)

    def request(self) -> bytes:
        return (
            f"GET /sse/{self.tally.channel} HTTP/1.1\r\nHost: {self.host}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

    def expected_status(self) -> bytes:
        return b"200"

    def consume(self) -> None:
        # Undo the chunked encoding into `chunked`, then split it into lines.
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            size = int(bytes(buffer[:end]).split(b";")[0], 16)
            if size == 0:
                self._fail("stream ended")
                return
            if len(buffer) < end + 2 + size + 2:
                break
            self.chunked += buffer[end + 2 : end + 2 + size]
            del buffer[: end + 2 + size + 2]
        lines = self.chunked
        while True:
            end = lines.find(b"\n")
            if end < 0:
                return
            line = bytes(lines[:end]).rstrip(b"\r")
            del lines[: end + 1]
            if not line:
                if self.data:
                    self.tally.see(seq_of(b"\n".join(self.data)))
                    self.data.clear()
            elif line.startswith(b"data:"):
                self.data.append(line[5:].removeprefix(b" "))


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


async def open_raw(
    kind: type[RawWebSocket] | type[RawSse],
    tally: Tally,
    host: str,
    port: int,
    *,
    source: str | None = None,
    timeout: float = 30.0,
) -> RawWebSocket | RawSse:
    """Connect one raw subscriber and wait until its response head arrived."""
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: kind(tally, host=host),
            host,
            port,
            local_addr=(source, 0) if source else None,
            family=socket.AF_INET,
        ),
        timeout,
    )
    await asyncio.wait_for(protocol.opened, timeout)
    return protocol


async def client_subscriber(
    url: str, transport: str, tally: Tally, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    """A pushwire Python client on `transport` subscribed to the tally's channel, counting
    until `stop` is set (it reconnects and resumes on its own, as an app's client would)."""
    async with connect(url, transports=(transport,), user=tally.label) as client:
        await client.subscribe(tally.channel)
        ready.set()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                receiving = asyncio.ensure_future(client.recv())
                done, _ = await asyncio.wait(
                    {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving not in done:
                    receiving.cancel()
                    break
                item = receiving.result()
                if isinstance(item, Message) and item.channel == tally.channel:
                    data = item.data if isinstance(item.data, bytes) else item.data.encode()
                    tally.see(seq_of(data))
                elif isinstance(item, Gap):
                    tally.gaps += 1
                elif isinstance(item, Failure):
                    tally.failures += 1
        finally:
            stopping.cancel()
            tally.reconnections = client.reconnections
