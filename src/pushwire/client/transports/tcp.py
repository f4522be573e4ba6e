"""The client's TCP transport: length-prefixed frames on the server's TCP port (4-byte
length, 1-byte kind: 1 text, 2 binary; then the payload). It answers the server's `ping`.

Liveness, as on the streams: a connection that brings nothing for one `heartbeat` (the
welcome says how long: the server pings a silent client that often) gets a `ping`; one that
still brings nothing after SILENT_HEARTBEATS of them is taken for dead (a link torn where
neither end saw it, which TCP alone notices only after minutes) and dropped as a lost
connection: the client resumes from its position, as after any drop."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct

from ..errors import ConnectionLost
from .base import (
    MAX_FRAME,
    ClientTransport,
    Envelope,
    Item,
    decode_text,
    encode_json,
)

__all__ = ["TcpTransport"]


def _frame(envelope: Envelope, data: bytes | None) -> bytes:
    header = encode_json(envelope)
    payload, kind = (header, 1) if data is None else (header + b"\n" + data, 2)
    return struct.pack("!IB", len(payload) + 1, kind) + payload


async def _read_frame(reader: asyncio.StreamReader) -> Item:
    try:
        length, kind = struct.unpack("!IB", await reader.readexactly(5))
        if length > MAX_FRAME:
            raise ConnectionLost(1009, f"frame over {MAX_FRAME} bytes")
        payload = await reader.readexactly(length - 1)
    except (asyncio.IncompleteReadError, OSError) as exc:
        raise ConnectionLost(1006, "connection ended") from exc
    if kind == 1:
        return decode_text(payload)
    header, _, data = payload.partition(b"\n")
    return decode_text(header)[0], data


class TcpTransport(ClientTransport):
    """Length-prefixed frames on the TCP port: length, kind (1 text, 2 binary), payload."""

    name = "tcp"

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        #: The frame being read: its read outlives a cancelled `receive()` (the next call
        #: takes it over, so a frame half read is never lost).
        self.frame: asyncio.Future[Item] | None = None

    async def open(self, hello: Envelope, timeout: float) -> None:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ssl_context), timeout
            )
        except (TimeoutError, OSError) as exc:
            raise ConnectionLost(1006, f"tcp: {exc}") from exc
        await self.send([(hello, None)])

    async def send(self, items: list[Item]) -> None:
        writer = self.writer
        if writer is None:
            raise ConnectionLost(1006, "not connected")
        for envelope, data in items:
            writer.write(_frame(envelope, data))
        try:
            await writer.drain()
        except OSError as exc:
            raise ConnectionLost(1006, str(exc)) from None

    async def receive(self) -> Item:
        while True:
            item = await self._next_frame()
            if item[0]["type"] == "ping":  # the server's heartbeat
                await self.send([({"type": "pong"}, None)])
                continue
            self._learn(item[0])
            return item

    async def _next_frame(self) -> Item:
        """The next frame; none for SILENT_HEARTBEATS heartbeats (after the welcome) is a
        lost connection."""
        reader = self.reader
        if reader is None:
            raise ConnectionLost(1006, "not connected")
        if self.frame is None:
            self.frame = asyncio.ensure_future(_read_frame(reader))
        frame = self.frame
        await self._until_done_or_silent(frame)
        self.frame = None
        if frame.cancelled():  # close() while it waited
            raise ConnectionLost(1006, "connection closed")
        return frame.result()

    async def _drop_silent(self) -> None:
        await self.close(1006)

    def _ping(self) -> None:
        """A `ping`, written without waiting: the server answers `pong` if the link lives."""
        if self.writer is not None:
            self.writer.write(_frame({"type": "ping"}, None))

    async def close(self, code: int = 1000) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        frame, self.frame = self.frame, None
        if frame is not None:
            frame.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
                await frame  # retrieved: its end is this connection's end
