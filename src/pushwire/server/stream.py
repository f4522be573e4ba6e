"""A never-ending HTTP/1.1 response that carries one client (the stream, sse and iframe
transports), and the chunked form of their framings.

The transports' framings make their own frames (an SSE event, an NDJSON line, a script);
on HTTP/1.1 each frame is one chunk. `chunked(framing)` is the framing that does both at
once, one object per framing for the whole process, so the hub still frames a channel message
once per framing in use and every chunked subscriber gets the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from ..clock import Clock, Timer
from ..core.transport import Framing, Receiver
from ..http11 import CHUNKED_END, chunk, response_head
from ..message import Data, Message
from ..transports.socket import await_opening
from ..web import StreamResponse

__all__ = ["ChunkedFraming", "HeartbeatSweep", "HttpStream", "chunked"]


class ChunkedFraming:
    """`framing`'s frames, each as one HTTP/1.1 chunk (nothing for an empty frame)."""

    __slots__ = ("framing",)

    def __init__(self, framing: Framing) -> None:
        self.framing = framing

    def frame_message(self, message: Message) -> bytes:
        return chunk(self.framing.frame_message(message))

    def frame_direct(self, data: Data, epoch: str | None = None, offset: int = 0) -> bytes:
        return chunk(self.framing.frame_direct(data, epoch, offset))

    def frame_control(self, fields: dict[str, Any]) -> bytes:
        frame = self.framing.frame_control(fields)
        return chunk(frame) if frame else b""


_CHUNKED: dict[Framing, ChunkedFraming] = {}


def chunked(framing: Framing) -> ChunkedFraming:
    """The chunked form of `framing`: the same object for every call with it."""
    found = _CHUNKED.get(framing)
    if found is None:
        found = _CHUNKED[framing] = ChunkedFraming(framing)
    return found


class HttpStream:
    """The hub's `Transport` for a client on a never-ending chunked response.

    Frames arrive already wrapped as chunks by the framing, so a write is one socket write.
    Closing writes a `close` envelope and ends the body, then calls `on_end` (the connection
    aborts the socket if that does not flush in time). After `max_bytes` (the iframe's bound)
    the stream closes with 4000: the client opens a new one and resumes.
    """

    __slots__ = (
        "done",
        "framing",
        "heartbeat_due",
        "heartbeat_frame",
        "max_bytes",
        "name",
        "on_end",
        "receiver",
        "sent",
        "socket",
    )

    def __init__(
        self,
        socket: asyncio.Transport,
        *,
        kind: str,
        framing: Framing,
        heartbeat: bytes,
        max_bytes: int | None,
        on_end: Callable[[], object] | None = None,
    ) -> None:
        self.socket = socket
        self.on_end = on_end
        self.name = kind
        self.framing: Framing = chunked(framing)
        self.heartbeat_frame = _chunked_heartbeat(heartbeat)
        self.heartbeat_due = 0.0  # when the next heartbeat is due (`HeartbeatSweep`)
        self.max_bytes = max_bytes
        self.sent = 0
        self.done = False
        self.receiver: Receiver | None = None

    def write(self, data: bytes) -> None:
        if self.done or not data:
            return
        self.socket.write(data)
        if self.max_bytes is not None:
            self.sent += len(data)
            if self.sent > self.max_bytes:
                asyncio.get_running_loop().call_soon(self.close, 4000, "stream recycled")

    def close(self, code: int, reason: str) -> None:
        """End the response with a `close` envelope; the session is detached (resumable)."""
        if self.done:
            return
        self.write(self.framing.frame_control({"type": "close", "code": code, "reason": reason}))
        self.done = True
        socket = self.socket
        if not socket.is_closing():
            socket.write(CHUNKED_END)
            socket.close()
            if self.on_end is not None:
                self.on_end()
        self._closed(code, reason)

    def lost(self) -> None:
        """The client went away."""
        if not self.done:
            self.done = True
            self._closed(1006, "connection lost")

    def _closed(self, code: int, reason: str) -> None:
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.closed(code, reason, by_client=False)

    def heartbeat(self, now: float, interval: float) -> None:
        """Called by the sweep: write the heartbeat frame when it is due, every `interval`."""
        if not self.done and now >= self.heartbeat_due:
            self.heartbeat_due = now + interval
            self.socket.write(self.heartbeat_frame)

    def start(
        self, make_receiver: Callable[[HttpStream], Receiver], hello: str | None
    ) -> Awaitable[None] | None:
        """Open the client's receiver, give it the opening envelope; an awaitable when
        opening must wait (the door runs it with `run_opening`)."""
        receiver = self.receiver = make_receiver(self)
        opening = receiver.open()
        if hello is not None:
            receiver.receive(hello)
        return opening

    async def run_opening(self, opening: Awaitable[None]) -> None:
        await await_opening(opening, self.close)


#: The heartbeats as chunks, one bytes object per heartbeat (the transports' constants).
_HEARTBEAT_CHUNKS: dict[bytes, bytes] = {}


def _chunked_heartbeat(heartbeat: bytes) -> bytes:
    framed = _HEARTBEAT_CHUNKS.get(heartbeat)
    if framed is None:
        framed = chunk(heartbeat)
        if len(_HEARTBEAT_CHUNKS) < 16:  # (a few constants; never grows with clients)
            _HEARTBEAT_CHUNKS[heartbeat] = framed
    return framed


class HeartbeatSweep:
    """Writes the heartbeat of every open stream of a server with one timer, not one timer
    per stream (a timer handle was about 500 bytes an idle SSE subscriber): every quarter of
    `heartbeat_interval`, each of `connections` (the door's set) with a stream is checked,
    so a heartbeat goes out every `heartbeat_interval`, at most a quarter of it late."""

    def __init__(self, interval: float, clock: Clock, connections: Collection[object]) -> None:
        self.interval = interval
        self.clock = clock
        self.period = max(0.05, interval / 4)
        self._connections = connections
        self._timer: Timer | None = None

    def add(self, stream: HttpStream) -> None:
        """`stream` began: its first heartbeat is due in `heartbeat_interval`."""
        stream.heartbeat_due = self.clock.time() + self.interval
        if self._timer is None:
            self._timer = self.clock.call_later(self.period, self._sweep)

    def _sweep(self) -> None:
        now, interval = self.clock.time(), self.interval
        for connection in list(self._connections):
            stream = getattr(connection, "stream", None)
            if isinstance(stream, HttpStream):
                stream.heartbeat(now, interval)
        self._timer = self.clock.call_later(self.period, self._sweep) if self._connections else None

    def stop(self) -> None:
        """No more heartbeats (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def open_stream(
    transport: asyncio.Transport,
    start: StreamResponse,
    on_end: Callable[[], None],
    heartbeats: HeartbeatSweep,
    track: Callable[[asyncio.Future[None]], None],
) -> HttpStream:
    """Begin the never-ending answer `start` on `transport`: its head and first bytes
    written, its stream opened (an opening that must be awaited goes to `track`) and swept
    for heartbeats; `on_end` is called once its end is written."""
    transport.write(response_head(start.status, start.headers, length=None))
    stream = HttpStream(
        transport,
        kind=start.kind,
        framing=start.framing,
        heartbeat=start.heartbeat,
        max_bytes=start.max_bytes,
        on_end=on_end,
    )
    if start.first:
        transport.write(chunk(start.first))
    opening = stream.start(start.make_receiver, start.hello)
    if opening is not None:
        track(asyncio.ensure_future(stream.run_opening(opening)))
    heartbeats.add(stream)  # one sweep per server, no timer per stream
    return stream
