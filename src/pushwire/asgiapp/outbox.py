"""What one ASGI connection has to send: the hub writes without waiting, one coroutine sends.

The hub's `Transport.write` never waits; an ASGI server's `send` does (it waits while the
client does not read: the server's backpressure). The frames in between are held here and
count against a bound (`max_write_buffer`); a client that lets more pile up is a slow
consumer, closed with 4001 like on the native server.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Outbox", "Outgoing"]


class Outbox:
    """Frames written and not sent yet, and whether the connection's end was asked for.

    `ended`: nothing more comes after what is held (the sender sends it, then ends the
    connection). `lost`: the client is gone; nothing more is sent at all.
    """

    __slots__ = ("_waiter", "ended", "frames", "limit", "lost", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.ended = False
        self.lost = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes, *, bounded: bool = True) -> bool:
        """Hold `data` for the sender; False (nothing held) when that would pass `limit`."""
        if bounded and self.size + len(data) > self.limit:
            return False
        self.frames.append(data)
        self.size += len(data)
        self._wake()
        return True

    def clear(self) -> None:
        """Drop what is held (a slow consumer's backlog: its client recovers by position)."""
        self.frames.clear()
        self.size = 0

    def end(self, *, lost: bool = False) -> None:
        """Nothing more will be put; with `lost`, nothing held is sent either."""
        self.ended = True
        self.lost = self.lost or lost
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def take(self) -> list[bytes]:
        """Everything held, once there is something (empty: the end, or the client is lost)."""
        while not self.frames and not self.ended:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.lost:
            return []
        frames = list(self.frames)
        self.clear()
        return frames


class Outgoing:
    """What an ASGI stream and an ASGI WebSocket do alike with their outbox: the door's
    shutdown (1001) and the memory budget's questions (pushwire.core.budget)."""

    __slots__ = ()

    outbox: Outbox

    def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        self.close(1001, "server shutting down")

    def buffered(self) -> int:
        """Bytes written and not sent yet."""
        return self.outbox.size

    def shed(self, reason: str) -> None:
        """Closed for the memory budget: a slow consumer (4001), its backlog dropped."""
        self.outbox.clear()
        self.close(4001, reason)
