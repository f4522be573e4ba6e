"""A never-ending HTTP/1.1 response that carries one client (the stream, sse and iframe
transports), and the chunked form of their framings.

The transports' framings make their own frames (an SSE event, an NDJSON line, a script);
on HTTP/1.1 each frame is one chunk. `chunked(framing)` is the framing that does both at
once, one object per framing for the whole process, so the hub still frames a channel message
once per framing in use and every chunked subscriber gets the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.transport import Framing, Receiver
from ..http11 import CHUNKED_END, chunk
from ..message import Data, Message
from ..transports.socket import await_opening

__all__ = ["ChunkedFraming", "HttpStream", "chunked"]


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
    Closing writes a `close` envelope and ends the body. After `max_bytes` (the iframe's
    bound) the stream closes with 4000: the client opens a new one and resumes.
    """

    __slots__ = (
        "done",
        "framing",
        "heartbeat_frame",
        "max_bytes",
        "name",
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
    ) -> None:
        self.socket = socket
        self.name = kind
        self.framing: Framing = chunked(framing)
        self.heartbeat_frame = chunk(heartbeat)
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

    def heartbeat(self) -> None:
        """Write the heartbeat frame (the connection keeps the interval)."""
        if not self.done:
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
