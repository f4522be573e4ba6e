"""The client's streaming transports, `stream` and `sse`: one never-ending chunked response,
opened by `POST E/<name>` with the hello as its body, carries the envelopes down, as NDJSON
lines or as `text/event-stream` events.

Liveness, as pushwire.js keeps it: a stream that brings nothing for one `heartbeat` (the
welcome says how long) gets a `ping` (on a connection of its own, so it never waits behind
a send); one that still brings nothing after SILENT_HEARTBEATS of them is taken for dead (a
link torn where neither end saw it) and dropped as a lost connection: the client resumes
from its position, as after any drop."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ..errors import ConnectionLost
from .base import MAX_FRAME, SILENT_HEARTBEATS, Envelope, Item, encode_json
from .http import HttpConnection, HttpTransport, read_chunk, refusal
from .sse_parser import SseParser

__all__ = ["SILENT_HEARTBEATS", "SseTransport", "StreamTransport"]


class _StreamingTransport(HttpTransport):
    """One never-ending chunked response (stream, sse)."""

    def __init__(
        self,
        base: str,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        send_timeout: float,
    ):
        super().__init__(base, host, port, ssl_context, send_timeout)
        self.reader: asyncio.StreamReader | None = None
        self.buffer = b""  # the end of the last chunk: a line or event not whole yet
        self.chunk: asyncio.Future[bytes] | None = None  # the chunk being read
        self.pinger = HttpConnection(host, port, ssl_context)  # pings: never behind a send
        self.pinging: asyncio.Future[None] | None = None

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
            data = await self._next_chunk()
            if not data:
                raise ConnectionLost(1006, "stream ended")
            self.pending.extend(self._split(data))
        return self._next_pending()

    async def _next_chunk(self) -> bytes:
        """The next chunk. Its read outlives a cancelled `receive()` (the next call takes it
        over: a chunk half read is never lost); no chunk for SILENT_HEARTBEATS heartbeats
        (after the welcome) is a lost connection."""
        reader = self.reader
        if reader is None:
            raise ConnectionLost(1006, "not connected")
        if self.chunk is None:
            self.chunk = asyncio.ensure_future(read_chunk(reader))
        chunk = self.chunk
        await self._until_done_or_silent(chunk)
        self.chunk = None
        try:
            return chunk.result()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise ConnectionLost(1006, "stream ended") from exc

    async def _drop_silent(self) -> None:
        self.downstream.close()  # its read ends with the connection

    def _ping(self) -> None:
        if self.pinging is None or self.pinging.done():
            self.pinging = asyncio.ensure_future(self._send_ping())

    async def _send_ping(self) -> None:
        """A `ping`: the server answers `pong` on the stream, if the stream still lives."""
        body = encode_json({"type": "ping"})
        with contextlib.suppress(ConnectionLost, OSError, ValueError):
            await self.pinger.request(
                "POST",
                f"{self.base}/send",
                body,
                self._session_header(),
                timeout=self.send_timeout,  # a ping stuck for good would stop the next ones
            )

    async def close(self, code: int = 1000) -> None:
        await super().close(code)
        self.pinger.close()
        tasks = {task for task in (self.chunk, self.pinging) if task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: its end is this connection's end


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

    def __init__(
        self,
        base: str,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        send_timeout: float,
    ):
        super().__init__(base, host, port, ssl_context, send_timeout)
        self.parser = SseParser(MAX_FRAME)

    async def open(self, hello: Envelope, timeout: float) -> None:
        self.parser = SseParser(MAX_FRAME)  # a new stream
        await super().open(hello, timeout)

    def _split(self, data: bytes) -> list[bytes]:
        self.parser.receive_data(data)
        return [event.data.encode() for event in self.parser.events_received()]
