"""The soak's abusive slice, each kind a loop that runs until told to stop, from its own
source address (so the well-behaved clients' address is not the one a per-IP limit sees):

- `slow_reader`: a `/ws/<channel>` subscriber on a big-message channel that never reads
  (a tiny receive buffer, reading paused); the server must close it (4001) and drop it
  after its close grace, freeing what it buffered;
- `half_open`: a request head begun and never finished; the server must time it out;
- `reconnect_storm`: WebSocket handshakes dropped (RST) as soon as they are answered;
- `oversize`: a frame announcing more than the largest message; the server must close 1009.

Each counts its cycles and what the server answered, in `AbuseCounts`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["AbuseCounts", "half_open", "oversize", "reconnect_storm", "slow_reader"]


@dataclass
class AbuseCounts:
    """Cycles per abuser kind, and the answers seen, e.g. `slow_reader close 4001`."""

    cycles: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)


def _handshake(host: str, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def _open(
    host: str, port: int, source: str, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


def _close_code(data: bytes) -> str:
    """The close code in the last close frame of a server's byte stream, by a scan for
    an unmasked close frame header (good enough to tell 4001 and 1009 apart)."""
    at = data.rfind(b"\x88")
    while at >= 0:
        if at + 4 <= len(data) and data[at + 1] < 126 and data[at + 1] >= 2:
            return f"close {struct.unpack_from('!H', data, at + 2)[0]}"
        at = data.rfind(b"\x88", 0, at)
    return "no close frame"


async def _drain(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, str]:
    """The tail of what the server sends until it closes, or `limit` seconds; and how it
    ended: `eof`, `reset` or `open` (still open after `limit`)."""
    chunks = bytearray()
    how = "eof"
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(1 << 16):
                chunks += chunk
                if len(chunks) > (1 << 16):  # keep the tail, where the close frame is
                    del chunks[: len(chunks) - (1 << 16)]
    except TimeoutError:
        how = "open"
    except ConnectionError:
        how = "reset"
    return bytes(chunks), how


def _ending(tail: bytes, how: str) -> str:
    """`close 4001`, `reset` or `open`: how the server ended a connection."""
    code = _close_code(tail)
    return code if code != "no close frame" else how


async def slow_reader(
    host: str,
    port: int,
    source: str,
    channel: str,
    life: float,
    stop: asyncio.Event,
    counts: AbuseCounts,
) -> None:
    """Subscribe without reading for `life` seconds, then read what came (the server should
    have closed it 4001, or reset it after the close's grace), and start again."""
    while not stop.is_set():
        counts.cycles["slow_reader"] += 1
        try:
            reader, writer = await _open(host, port, source, rcvbuf=4096)
        except OSError:
            counts.answers["slow_reader refused"] += 1
            await _pause(stop, 1.0)
            continue
        writer.write(_handshake(host, f"/ws/{channel}"))
        try:
            async with asyncio.timeout(30):
                await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            counts.answers["slow_reader no handshake"] += 1
            writer.transport.abort()
            continue
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # never read: the server's buffer for us grows
        await _pause(stop, life)
        transport.resume_reading()
        if stop.is_set():  # the soak ended within this life: the server need not have cut it
            counts.answers["slow_reader life cut short by the end"] += 1
            transport.abort()
            return
        # What the server still sends (its kernel's queue, a few MB) comes at once on
        # loopback; 30 s allows for a busy machine.
        counts.answers[f"slow_reader {_ending(*await _drain(reader, 30.0))}"] += 1
        transport.abort()


async def half_open(
    host: str, port: int, source: str, stop: asyncio.Event, counts: AbuseCounts
) -> None:
    while not stop.is_set():
        counts.cycles["half_open"] += 1
        try:
            reader, writer = await _open(host, port, source)
        except OSError:
            counts.answers["half_open refused"] += 1
            await _pause(stop, 1.0)
            continue
        writer.write(f"GET /ws/soak-0 HTTP/1.1\r\nHost: {host}\r\n".encode())
        answer = await _wait_closed(reader, stop, 120.0)
        counts.answers[f"half_open {answer}"] += 1
        writer.transport.abort()


async def reconnect_storm(
    host: str, port: int, source: str, per_second: float, stop: asyncio.Event, counts: AbuseCounts
) -> None:
    while not stop.is_set():
        counts.cycles["reconnect_storm"] += 1
        try:
            reader, writer = await _open(host, port, source)
            writer.write(_handshake(host, "/ws/soak-storm"))
            async with asyncio.timeout(30):
                head = await reader.readuntil(b"\r\n\r\n")
            counts.answers[f"reconnect_storm {head.split(b' ', 2)[1].decode()}"] += 1
            writer.transport.abort()  # a reset, not a close: the harshest way to leave
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            counts.answers["reconnect_storm refused"] += 1
        await _pause(stop, 1.0 / per_second)


async def oversize(
    host: str, port: int, source: str, max_message: int, stop: asyncio.Event, counts: AbuseCounts
) -> None:
    while not stop.is_set():
        counts.cycles["oversize"] += 1
        try:
            reader, writer = await _open(host, port, source)
            writer.write(_handshake(host, "/ws/soak-oversize"))
            async with asyncio.timeout(30):
                await reader.readuntil(b"\r\n\r\n")
            # A text frame announcing one byte more than the largest message, and some of it.
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, max_message + 1) + os.urandom(4)
            writer.write(header + b"x" * 4096)
            counts.answers[f"oversize {_ending(*await _drain(reader, 30.0))}"] += 1
            writer.transport.abort()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            counts.answers["oversize refused"] += 1
        await _pause(stop, 1.0)


async def _wait_closed(reader: asyncio.StreamReader, stop: asyncio.Event, limit: float) -> str:
    """Wait for the server to close (what its answer began with), or for `stop`."""
    reading = asyncio.ensure_future(_drain(reader, limit))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not reading.done():
        reading.cancel()
        return "still open at the end"
    data, how = reading.result()
    if how != "eof":
        return how
    return data.split(b"\r\n", 1)[0].decode(errors="replace")[:40] or "closed, no answer"


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
