"""The client's streaming transports, `stream` and `sse`: one never-ending chunked response,
opened by `POST E/<name>` with the hello as its body, carries the envelopes down, as NDJSON
lines or as `text/event-stream` events."""

from __future__ import annotations

import asyncio
import ssl

from ..errors import ConnectionLost
from .base import MAX_FRAME, Envelope, Item, encode_json
from .http import HttpTransport, read_chunk, refusal
from .sse_parser import SseParser

__all__ = ["SseTransport", "StreamTransport"]


class _StreamingTransport(HttpTransport):
    """One never-ending chunked response (stream, sse)."""

    def __init__(self, base: str, host: str, port: int, ssl_context: ssl.SSLContext | None):
        super().__init__(base, host, port, ssl_context)
        self.reader: asyncio.StreamReader | None = None
        self.buffer = b""  # the end of the last chunk: a line or event not whole yet

    async def open(self, hello: Envelope, timeout: float) -> None:
        try:
            status, fields, reader = await asyncio.wait_for(
                self.downstream.begin("POST", f"{self.base}/{self.name}", encode_json(hello)),
                timeout,
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            raise ConnectionLost(1006, f"{self.name}: {exc}") from exc
        if status != 200:
            raise refusal(self.name, status, fields.get("retry-after"))
        self.reader = reader

    def _split(self, data: bytes) -> list[bytes]:
        raise NotImplementedError

    async def receive(self) -> Item:
        while not self.pending:
            reader = self.reader
            if reader is None:
                raise ConnectionLost(1006, "not connected")
            try:
                data = await read_chunk(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                raise ConnectionLost(1006, "stream ended") from exc
            if not data:
                raise ConnectionLost(1006, "stream ended")
            self.pending.extend(self._split(data))
        return self._next_pending()


class StreamTransport(_StreamingTransport):
    """NDJSON lines on one chunked response; empty lines are heartbeats."""

    name = "stream"

    def _split(self, data: bytes) -> list[bytes]:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line for line in lines if line.strip()]


class SseTransport(_StreamingTransport):
    """`text/event-stream`: one envelope per event, in its data (read as the HTML standard
    reads an event stream: multi-line data, `id`, `retry`, CR / LF / CRLF line ends)."""

    name = "sse"

    def __init__(self, base: str, host: str, port: int, ssl_context: ssl.SSLContext | None):
        super().__init__(base, host, port, ssl_context)
        self.parser = SseParser(MAX_FRAME)

    async def open(self, hello: Envelope, timeout: float) -> None:
        self.parser = SseParser(MAX_FRAME)  # a new stream
        await super().open(hello, timeout)

    def _split(self, data: bytes) -> list[bytes]:
        self.parser.receive_data(data)
        return [event.data.encode() for event in self.parser.events_received()]
