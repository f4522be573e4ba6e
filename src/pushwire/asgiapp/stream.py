"""A never-ending answer over ASGI (the stream, sse and iframe transports): one client's
transport, its frames sent as body pieces, the ASGI server doing the HTTP framing.

The framing is the transport's own, unchanged (an SSE event, an NDJSON line, a script): the
hub frames a channel message once per framing, and a native server's chunked subscribers
and this door's share nothing but the app. Heartbeats go out every `heartbeat_interval`
(the hub's clock); `max_bytes` (the iframe's bound) recycles the stream with 4000; a client
that lets `max_write_buffer` bytes pile up is closed with 4001.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..clock import Clock, Timer
from ..config import Config
from ..core.transport import Framing, Receiver
from ..transports.socket import await_opening
from ..web import StreamResponse
from .outbox import Outbox, Outgoing
from .scope import Receive, Send

__all__ = ["AsgiStream", "serve_stream"]


class AsgiStream(Outgoing):
    """The hub's `Transport` for a client on a never-ending ASGI answer."""

    __slots__ = (
        "_timer",
        "clock",
        "config",
        "done",
        "framing",
        "heartbeat_frame",
        "max_bytes",
        "name",
        "outbox",
        "receiver",
        "sent",
    )

    def __init__(
        self,
        *,
        kind: str,
        framing: Framing,
        heartbeat: bytes,
        max_bytes: int | None,
        config: Config,
        clock: Clock,
    ) -> None:
        self.name = kind
        self.framing = framing
        self.heartbeat_frame = heartbeat
        self.max_bytes = max_bytes
        self.config = config
        self.clock = clock
        self.outbox = Outbox(config.max_write_buffer)
        self.sent = 0
        self.done = False
        self.receiver: Receiver | None = None
        self._timer: Timer | None = clock.call_later(config.heartbeat_interval, self._heartbeat)

    def write(self, data: bytes) -> None:
        if self.done or not data:
            return
        if not self.outbox.put(data):
            limit = self.config.max_write_buffer
            self.outbox.clear()
            asyncio.get_running_loop().call_soon(
                self.close, 4001, f"slow consumer (> {limit} bytes queued)"
            )
            return
        if self.max_bytes is not None:
            self.sent += len(data)
            if self.sent > self.max_bytes:
                asyncio.get_running_loop().call_soon(self.close, 4000, "stream recycled")

    def close(self, code: int, reason: str) -> None:
        """End the answer with a `close` envelope; the session is detached (resumable)."""
        if self.done:
            return
        fields = {"type": "close", "code": code, "reason": reason}
        self.outbox.put(self.framing.frame_control(fields), bounded=False)
        self._end(code, reason, lost=False)

    def lost(self) -> None:
        """The client went away."""
        if not self.done:
            self._end(1006, "connection lost", lost=True)

    def _end(self, code: int, reason: str, *, lost: bool) -> None:
        self.done = True
        self.outbox.end(lost=lost)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.closed(code, reason, by_client=False)

    def _heartbeat(self) -> None:
        if self.done:
            return
        self.outbox.put(self.heartbeat_frame, bounded=False)
        self._timer = self.clock.call_later(self.config.heartbeat_interval, self._heartbeat)

    async def send_all(self, send: Send) -> None:
        """Send what is written until the stream ends; the end of the body after a close.
        A client that does not take the end within `close_timeout` is left (the ASGI server
        drops the connection when the app returns)."""
        outbox = self.outbox
        while not outbox.ended:
            frames = await outbox.take()
            if frames:
                await send(
                    {"type": "http.response.body", "body": b"".join(frames), "more_body": True}
                )
        if outbox.lost:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.close_timeout):
                frames = await outbox.take()
                await send({"type": "http.response.body", "body": b"".join(frames)})


async def serve_stream(
    start: StreamResponse,
    receive: Receive,
    send: Send,
    *,
    config: Config,
    clock: Clock,
    connections: set[AsgiStream],
) -> None:
    """Answer with `start`: the client's receiver opened, the head and first bytes, then
    every frame written, until the stream ends or the client goes away. The stream is in
    `connections` meanwhile (the door closes them at shutdown)."""
    stream = AsgiStream(
        kind=start.kind,
        framing=start.framing,
        heartbeat=start.heartbeat,
        max_bytes=start.max_bytes,
        config=config,
        clock=clock,
    )
    connections.add(stream)
    watcher = asyncio.ensure_future(_watch(receive, stream))
    opening_task: asyncio.Future[None] | None = None
    try:
        # The receiver opens first (a channel is subscribed) and what it writes waits in the
        # outbox: a client that sees the head can count on it, as on the native server.
        receiver = stream.receiver = start.make_receiver(stream)
        opening = receiver.open()
        if start.hello is not None:
            receiver.receive(start.hello)
        if opening is not None:
            opening_task = asyncio.ensure_future(await_opening(opening, stream.close))
        head = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in start.headers]
        await send({"type": "http.response.start", "status": start.status, "headers": head})
        if start.first:
            await send({"type": "http.response.body", "body": start.first, "more_body": True})
        await stream.send_all(send)
    finally:
        connections.discard(stream)
        watcher.cancel()
        stream.lost()  # when sending failed: the client is gone
        if opening_task is not None and not opening_task.done():
            await asyncio.wait([opening_task])  # a connect handler's refusal finishes first


async def _watch(receive: Receive, stream: AsgiStream) -> None:
    """Until the client goes away (`http.disconnect`); cancelled when the stream ends."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.lost()
            return
