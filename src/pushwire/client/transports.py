"""The Python client's transports: one small interface, one class per wire.

A transport opens a connection with the `hello` envelope, sends envelopes, and yields the
envelopes that arrive, as `(envelope, binary data or None)`. When its connection ends it raises
`ConnectionLost`; the client decides whether to come back. The HTTP transports use a minimal
HTTP/1.1 client over asyncio streams (keep-alive, chunked bodies), so the client needs nothing
beyond what pushwire itself depends on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import struct
from collections import deque
from typing import Any, Final
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..envelope import SUBPROTOCOL
from .errors import ConnectionLost

__all__ = ["TRANSPORTS", "ClientTransport", "make_transport"]

Envelope = dict[str, Any]
Item = tuple[Envelope, bytes | None]

#: Bytes of one HTTP response head the client accepts.
MAX_HEAD: Final = 64 * 1024
#: Largest frame or line the client accepts (a message of 1 MiB plus its envelope).
MAX_FRAME: Final = 4 * 1024 * 1024


class ClientTransport:
    """What the client needs of a transport."""

    name = "transport"
    #: True when acknowledgements ride on the transport's own requests (polls).
    piggybacks_ack = False

    def __init__(self) -> None:
        self.session: str | None = None
        self.ack = 0

    async def open(self, hello: Envelope, timeout: float) -> None:
        """Connect and send `hello`. Raises `ConnectionLost` when it cannot."""
        raise NotImplementedError

    async def send(self, items: list[Item]) -> None:
        """Send envelopes in order. Raises `ConnectionLost`."""
        raise NotImplementedError

    async def receive(self) -> Item:
        """The next envelope. Raises `ConnectionLost` at the end of the connection."""
        raise NotImplementedError

    async def close(self, code: int = 1000) -> None:
        """End the connection (no `ConnectionLost` is raised for it)."""
        raise NotImplementedError

    def _learn(self, envelope: Envelope) -> None:
        if envelope.get("type") == "welcome" and isinstance(envelope.get("session"), str):
            self.session = envelope["session"]


def _text(envelope: Envelope, data: bytes | None) -> bytes:
    """An envelope as JSON text; binary data as data64 (the text transports)."""
    if data is not None:
        envelope = {**envelope, "data64": base64.b64encode(data).decode("ascii")}
    return json.dumps(envelope, separators=(",", ":")).encode()


def _decode_text(line: bytes) -> Item:
    envelope = json.loads(line)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        raise ConnectionLost(4100, "the server sent an envelope without a type")
    return envelope, None


# -- WebSocket ------------------------------------------------------------------------------


class WebSocketTransport(ClientTransport):
    """pushwire.v1 over WebSocket: JSON text frames, binary data in binary frames."""

    name = "websocket"

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self.url = url
        self.ssl_context = ssl_context
        self.ws: ClientConnection | None = None

    async def open(self, hello: Envelope, timeout: float) -> None:
        try:
            self.ws = await ws_connect(
                self.url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                max_size=MAX_FRAME,
                open_timeout=timeout,
                ssl=self.ssl_context,
            )
        except (TimeoutError, OSError, InvalidHandshake, InvalidStatus) as exc:
            raise ConnectionLost(1006, f"websocket: {exc}") from exc
        if self.ws.subprotocol != SUBPROTOCOL:
            await self.ws.close()
            raise ConnectionLost(1006, f"the server did not accept {SUBPROTOCOL}")
        await self.send([(hello, None)])

    async def send(self, items: list[Item]) -> None:
        ws = self.ws
        if ws is None:
            raise ConnectionLost(1006, "not connected")
        try:
            for envelope, data in items:
                if data is None:
                    await ws.send(json.dumps(envelope, separators=(",", ":")))
                else:
                    header = json.dumps(envelope, separators=(",", ":")).encode()
                    await ws.send(header + b"\n" + data)
        except ConnectionClosed as exc:
            raise _lost(exc) from None

    async def receive(self) -> Item:
        ws = self.ws
        if ws is None:
            raise ConnectionLost(1006, "not connected")
        try:
            frame = await ws.recv()
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        if isinstance(frame, str):
            item = _decode_text(frame.encode())
        else:
            header, newline, data = frame.partition(b"\n")
            if not newline:
                raise ConnectionLost(4100, "binary envelope without its newline")
            item = (_decode_text(header)[0], data)
        self._learn(item[0])
        return item

    async def close(self, code: int = 1000) -> None:
        if self.ws is not None:
            await self.ws.close(code)


def _lost(exc: ConnectionClosed) -> ConnectionLost:
    close = exc.rcvd or exc.sent
    return ConnectionLost(close.code if close else 1006, close.reason if close else "")


# -- TCP --------------------------------------------------------------------------------------


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
            header = json.dumps(envelope, separators=(",", ":")).encode()
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
                item = _decode_text(payload)
            else:
                header, _, data = payload.partition(b"\n")
                item = (_decode_text(header)[0], data)
            if item[0]["type"] == "ping":  # the server's heartbeat
                await self.send([({"type": "pong"}, None)])
                continue
            self._learn(item[0])
            return item

    async def close(self, code: int = 1000) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# -- HTTP ------------------------------------------------------------------------------------


class _Http:
    """A minimal HTTP/1.1 client connection: keep-alive requests and streamed chunked bodies."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context, limit=MAX_FRAME
            )
        return self.reader, self.writer

    async def begin(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], asyncio.StreamReader]:
        """Send a request; return the status, headers and the reader at the body."""
        reader, writer = await self._connect()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
        if len(raw) > MAX_HEAD:
            raise ConnectionLost(1009, f"http: response head over {MAX_HEAD} bytes")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers, reader

    async def request(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """A whole request and response (Content-Length bodies), on a kept-alive connection."""
        for attempt in (0, 1):
            try:
                status, headers, reader = await self.begin(method, target, body)
                content = await reader.readexactly(int(headers.get("content-length", "0")))
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.close()
                if attempt:
                    raise ConnectionLost(1006, f"http: {exc}") from exc
                continue  # the kept-alive connection was closed under us: once more, fresh
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, headers, content
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    """The next chunk of a chunked body (b"" at its end)."""
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.split(b";")[0], 16)
    if size > MAX_FRAME:
        raise ConnectionLost(1009, f"chunk over {MAX_FRAME} bytes")
    data = await reader.readexactly(size + 2)
    return data[:-2]


class _HttpTransport(ClientTransport):
    """Shared by the HTTP transports: the upstream is `POST E/send?session=S`."""

    def __init__(self, base: str, host: str, port: int, ssl_context: ssl.SSLContext | None):
        super().__init__()
        self.base = base  # the endpoint path, e.g. /pushwire
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.upstream = _Http(host, port, ssl_context)

    def _hello_target(self, hello: Envelope) -> str:
        return f"{self.base}/{self.name}?hello={quote(json.dumps(hello, separators=(',', ':')))}"

    async def send(self, items: list[Item]) -> None:
        if self.session is None:
            raise ConnectionLost(1006, "no session yet")
        body = b"\n".join(_text(envelope, data) for envelope, data in items)
        status, _, content = await self.upstream.request(
            "POST", f"{self.base}/send?session={self.session}", body
        )
        if status != 204:
            raise ConnectionLost(1006, f"send refused: HTTP {status} {content[:120]!r}")

    async def close(self, code: int = 1000) -> None:
        self.upstream.close()


class _StreamingTransport(_HttpTransport):
    """One never-ending chunked response (stream, sse)."""

    def __init__(self, base: str, host: str, port: int, ssl_context: ssl.SSLContext | None):
        super().__init__(base, host, port, ssl_context)
        self.downstream = _Http(host, port, ssl_context)
        self.reader: asyncio.StreamReader | None = None
        self.pending: deque[bytes] = deque()
        self.buffer = b""

    async def open(self, hello: Envelope, timeout: float) -> None:
        try:
            status, _, reader = await asyncio.wait_for(
                self.downstream.begin("GET", self._hello_target(hello)), timeout
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            raise ConnectionLost(1006, f"{self.name}: {exc}") from exc
        if status != 200:
            raise ConnectionLost(1006, f"{self.name}: HTTP {status}")
        self.reader = reader

    def _split(self, data: bytes) -> list[bytes]:
        raise NotImplementedError

    async def receive(self) -> Item:
        while not self.pending:
            reader = self.reader
            if reader is None:
                raise ConnectionLost(1006, "not connected")
            try:
                data = await _chunks(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                raise ConnectionLost(1006, "stream ended") from exc
            if not data:
                raise ConnectionLost(1006, "stream ended")
            self.pending.extend(self._split(data))
        item = _decode_text(self.pending.popleft())
        self._learn(item[0])
        return item

    async def close(self, code: int = 1000) -> None:
        self.downstream.close()
        await super().close(code)


class StreamTransport(_StreamingTransport):
    """NDJSON lines on one chunked response; empty lines are heartbeats."""

    name = "stream"

    def _split(self, data: bytes) -> list[bytes]:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line for line in lines if line.strip()]


class SseTransport(_StreamingTransport):
    """`text/event-stream`: one envelope per event, in its `data:` line."""

    name = "sse"

    def _split(self, data: bytes) -> list[bytes]:
        self.buffer += data
        *events, self.buffer = self.buffer.split(b"\n\n")
        found = []
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    found.append(line[5:].strip())
        return found


#: A poll answered 503 is asked again this many times, waiting POLL_RETRY_DELAY seconds,
#: doubled each time up to POLL_RETRY_DELAY_MAX, before the connection counts as lost.
POLL_RETRIES: Final = 6
POLL_RETRY_DELAY: Final = 0.1
POLL_RETRY_DELAY_MAX: Final = 2.0


class PollTransport(_HttpTransport):
    """`longpoll` (held until something is queued) or `polling` (answered at once)."""

    piggybacks_ack = True

    def __init__(
        self,
        name: str,
        base: str,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        interval: float,
    ) -> None:
        super().__init__(base, host, port, ssl_context)
        self.name = name
        self.interval = interval
        self.downstream = _Http(host, port, ssl_context)
        self.cursor = 0
        self.pending: deque[bytes] = deque()

    async def _get(self, target: str, *, retry: bool = False) -> None:
        """One poll. `retry`: a 503 (the session's node did not answer in time, say) is
        asked again with the same cursor, after POLL_RETRY_DELAY doubling up to
        POLL_RETRY_DELAY_MAX, at most POLL_RETRIES times: the server keeps frames until a
        cursor acknowledges them, so nothing is lost."""
        for attempt in range(POLL_RETRIES + 1):
            status, headers, body = await self.downstream.request("GET", target)
            if status != 503 or not retry or attempt == POLL_RETRIES:
                break
            await asyncio.sleep(min(POLL_RETRY_DELAY * 2**attempt, POLL_RETRY_DELAY_MAX))
        if status != 200:
            # 410 unknown session, 409 not connected: the client resumes or starts anew.
            raise ConnectionLost(1006, f"{self.name}: HTTP {status} {body[:120]!r}")
        self.cursor = int(headers.get("pushwire-cursor", self.cursor))
        self.pending.extend(line for line in body.split(b"\n") if line.strip())

    async def open(self, hello: Envelope, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._get(self._hello_target(hello)), timeout)
        except (TimeoutError, OSError) as exc:
            raise ConnectionLost(1006, f"{self.name}: {exc}") from exc

    async def receive(self) -> Item:
        while not self.pending:
            if self.session is None:
                raise ConnectionLost(1006, "no session")
            target = f"{self.base}/{self.name}?session={self.session}&cursor={self.cursor}"
            if self.ack:
                target += f"&seq={self.ack}"
            await self._get(target, retry=True)
            if not self.pending and self.name == "polling":
                await asyncio.sleep(self.interval)  # ajax polling asks again after an interval
        item = _decode_text(self.pending.popleft())
        self._learn(item[0])
        return item

    async def close(self, code: int = 1000) -> None:
        self.downstream.close()
        await super().close(code)


TRANSPORTS: Final = ("websocket", "sse", "stream", "longpoll", "polling", "tcp")


def make_transport(
    name: str, url: str, *, ssl_context: ssl.SSLContext | None, poll_interval: float
) -> ClientTransport:
    """A transport for `url` (ws://, wss://, http://, https:// or tcp://).

    Raises:
        ValueError: an unknown transport, or one that the URL's scheme cannot carry.
    """
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https", "tcps")
    host = parts.hostname or "127.0.0.1"
    path = parts.path.rstrip("/") or "/pushwire"
    if name == "tcp":
        if parts.scheme not in ("tcp", "tcps"):
            raise ValueError(f"the tcp transport needs a tcp:// URL, not {url!r}")
        return TcpTransport(host, parts.port or 7000, ssl_context)
    if parts.scheme in ("tcp", "tcps"):
        raise ValueError(f"a tcp:// URL carries only the tcp transport, not {name!r}")
    port = parts.port or (443 if secure else 80)
    if name == "websocket":
        scheme = "wss" if secure else "ws"
        return WebSocketTransport(f"{scheme}://{parts.netloc}{path}", ssl_context)
    if name == "sse":
        return SseTransport(path, host, port, ssl_context)
    if name == "stream":
        return StreamTransport(path, host, port, ssl_context)
    if name in ("longpoll", "polling"):
        return PollTransport(name, path, host, port, ssl_context, poll_interval)
    raise ValueError(f"unknown transport {name!r}; known: {', '.join(TRANSPORTS)}")
