"""The client's TCP transport: length-prefixed frames on the server's TCP port (4-byte
length, 1-byte kind: 1 text, 2 binary; then the payload). It answers the server's `ping`."""

from __future__ import annotations

import asyncio
import ssl
import struct

from ..errors import ConnectionLost
from .base import MAX_FRAME, ClientTransport, Envelope, Item, decode_text, encode_json

__all__ = ["TcpTransport"]


class TcpTransport(ClientTransport):
    """Length-prefixed frames on the TCP port: length, kind (1 text, 2 binary), payload."""

    name = "tcp"

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

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
            header = encode_json(envelope)
            payload, kind = (header, 1) if data is None else (header + b"\n" + data, 2)
            writer.write(struct.pack("!IB", len(payload) + 1, kind) + payload)
        try:
            await writer.drain()
        except OSError as exc:
            raise ConnectionLost(1006, str(exc)) from None

    async def receive(self) -> Item:
        reader = self.reader
        if reader is None:
            raise ConnectionLost(1006, "not connected")
        while True:
            try:
                length, kind = struct.unpack("!IB", await reader.readexactly(5))
                if length > MAX_FRAME:
                    raise ConnectionLost(1009, f"frame over {MAX_FRAME} bytes")
                payload = await reader.readexactly(length - 1)
            except (asyncio.IncompleteReadError, OSError) as exc:
                raise ConnectionLost(1006, "connection ended") from exc
            if kind == 1:
                item = decode_text(payload)
            else:
                header, _, data = payload.partition(b"\n")
                item = (decode_text(header)[0], data)
            if item[0]["type"] == "ping":  # the server's heartbeat
                await self.send([({"type": "pong"}, None)])
                continue
            self._learn(item[0])
            return item

    async def close(self, code: int = 1000) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
