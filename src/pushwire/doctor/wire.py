"""The doctor's side of the wire: where the deployment is, and a small HTTP/1.1 client that
sees each byte of a streamed response when it arrives (no pool, no buffering of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import orjson

#: Longest response head the doctor reads (bytes).
MAX_HEAD: Final = 65536


@dataclass(frozen=True, slots=True)
class Target:
    """Where the deployment is: `base` is the path pushwire is mounted at ("" at the root)."""

    secure: bool
    host: str
    port: int
    base: str
    context: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, url: str, cafile: str | None = None) -> Target:
        """Raises: ValueError: not an http:// or https:// URL with a host."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"URL must be http://host[:port][/path] or https://…, not {url!r}")
        secure = parts.scheme == "https"
        context = ssl.create_default_context(cafile=cafile) if secure else None
        port = parts.port or (443 if secure else 80)
        return cls(secure, parts.hostname, port, parts.path.rstrip("/"), context)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.authority}{self.base}{path}"


@dataclass(slots=True)
class Response:
    version: str
    status: int
    headers: dict[str, str]

    @property
    def keeps_alive(self) -> bool:
        tokens = self.headers.get("connection", "").lower()
        return self.version == "HTTP/1.1" and "close" not in tokens


async def open_connection(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        target.host,
        target.port,
        ssl=target.context,
        server_hostname=target.host if target.context else None,
        limit=MAX_HEAD,
    )


def request(target: Target, method: str, path: str, body: bytes = b"", *extra: str) -> bytes:
    lines = [f"{method} {target.base}{path} HTTP/1.1", f"Host: {target.authority}", *extra]
    if body or method == "POST":
        lines += ["Content-Type: text/plain", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return Response(version, int(rest[:3]), headers)


async def body(reader: asyncio.StreamReader, response: Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive (chunked, Content-Length or up to the end)."""
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    length = response.headers.get("content-length")
    left = int(length) if length is not None else -1
    while left != 0:
        data = await reader.read(65536 if left < 0 else min(left, 65536))
        if not data:
            return
        left -= len(data) if left > 0 else 0
        yield data


async def decoded(response: Response, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`pieces` of a body decompressed as they come, when the response is gzip or deflate
    encoded (the doctor asks for gzip, as browsers do: a compressing proxy must flush)."""
    encoding = response.headers.get("content-encoding", "identity").lower()
    if encoding not in ("gzip", "deflate"):
        async for piece in pieces:
            yield piece
        return
    inflate = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    async for piece in pieces:
        yield inflate.decompress(piece)


async def body_bytes(reader: asyncio.StreamReader, response: Response) -> bytes:
    return b"".join([data async for data in body(reader, response)])


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):  # the connection is gone either way
        await asyncio.wait_for(writer.wait_closed(), 1)


class Events:
    """The envelopes of a streamed body (SSE events or NDJSON lines), one at a time."""

    def __init__(self, kind: str, body: AsyncIterator[bytes]) -> None:
        self.kind = kind
        self.body = body
        self.separator = b"\n\n" if kind == "sse" else b"\n"
        self.buffer = bytearray()
        #: Bytes of the body received so far.
        self.received = 0

    async def next(self) -> dict[str, object]:
        """The next envelope. Raises: StopAsyncIteration: the body ended."""
        while True:
            end = self.buffer.find(self.separator)
            if end < 0:
                data = await anext(self.body)
                self.received += len(data)
                self.buffer += data
                continue
            block = bytes(self.buffer[:end])
            del self.buffer[: end + len(self.separator)]
            if self.kind == "sse":
                lines = block.split(b"\n")
                block = b"\n".join(line[5:].lstrip(b" ") for line in lines if line[:5] == b"data:")
            if block.strip():
                envelope: dict[str, object] = orjson.loads(block)
                return envelope
