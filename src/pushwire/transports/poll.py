"""The `polling` and `longpoll` transports: a per-session queue that GET requests drain.

Sans-I/O apart from one future: `PollTransport` is the hub's `Transport` for a polling client
for as long as the client keeps polling. Frames (NDJSON lines, framed once and shared with
every other poller) wait in a queue; each frame has an index. A poll takes the frames after
the cursor it acknowledges, and they stay queued until a later poll acknowledges them, so a
response lost in transit is simply sent again. `polling` answers at once; `longpoll` holds the
request until a frame arrives or `longpoll_timeout` passes.

A held long-poll costs no task: `hold` keeps one callback and one timer. Every transport that
a loop turn's publishes reach is released by a single `call_soon` for all of them, so one
message to 10,000 held polls schedules one callback, not 10,000.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..envelope import encode_text
from .base import Framing
from .stream import NDJSON_FRAMING

__all__ = ["PollBatch", "PollTransport"]

POLL_KINDS: Final = ("polling", "longpoll")


class PollBatch:
    """What one poll returns: the frames joined, and the cursor that acknowledges them."""

    __slots__ = ("body", "closed", "cursor")

    def __init__(self, body: bytes, cursor: int, closed: bool) -> None:
        self.body = body
        self.cursor = cursor
        self.closed = closed


class PollTransport:
    """A polling client's queue of frames, with cursor acknowledgement.

    Bounds: `max_frames` and `max_bytes` queued (unacknowledged); over either, the transport
    closes with 4001 (slow consumer), which its client answers by resuming the session.
    """

    framing: Framing = NDJSON_FRAMING

    def __init__(
        self,
        name: str,
        *,
        max_frames: int,
        max_bytes: int,
        on_close: Callable[[int, str], None],
    ) -> None:
        self.name = name
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._first = 1  # index of _frames[0]
        self._bytes = 0
        self._release: Callable[[], None] | None = None  # the held poll's answer
        self._hold_timer: asyncio.TimerHandle | None = None
        self._release_due = False  # in the batch released on the next loop turn
        self._on_close = on_close
        self.close_code: int | None = None
        self.handler: Any = None  # the session's envelope handler (set by the app)
        self._idle: asyncio.TimerHandle | None = None

    # -- hub side ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.close_code is not None or not data:
            return
        if len(self._frames) >= self.max_frames or self._bytes + len(data) > self.max_bytes:
            # The hub may be iterating its subscribers: close on the next loop turn, and keep
            # nothing more meanwhile.
            self.close_code = 4001
            asyncio.get_running_loop().call_soon(self._overflowed)
            return
        self._frames.append(data)
        self._bytes += len(data)
        if self._release is not None and not self._release_due:
            # Answer on the next loop turn: frames published in this turn share a response.
            self._release_due = True
            _release_soon(self)

    def _overflowed(self) -> None:
        self.close_code = None
        self.close(
            4001, f"slow consumer (> {self.max_frames} frames or {self.max_bytes} bytes queued)"
        )

    def close(self, code: int, reason: str) -> None:
        """Close: the next poll gets a `close` envelope; the session is detached now."""
        if self.close_code is not None:
            return
        self.disarm()
        self.close_code = code
        self._frames.append(encode_text({"type": "close", "code": code, "reason": reason}) + b"\n")
        self.release()
        self._on_close(code, reason)

    # -- HTTP side --------------------------------------------------------------------------

    def acknowledge(self, cursor: int) -> None:
        """The client has every frame up to index `cursor`."""
        frames = self._frames
        while frames and self._first <= cursor:
            self._bytes -= len(frames.popleft())
            self._first += 1

    def take(self) -> PollBatch:
        """Every queued frame after the acknowledged cursor (they stay until acknowledged)."""
        return PollBatch(
            b"".join(self._frames), self._first + len(self._frames) - 1, self.close_code is not None
        )

    @property
    def pending(self) -> bool:
        return bool(self._frames)

    def arm(self, grace: float) -> None:
        """After answering a poll: the client counts as gone if no poll comes within `grace`."""
        self.disarm()
        if self.close_code is None:
            self._idle = asyncio.get_running_loop().call_later(
                grace, self.close, 4002, f"no poll within {grace} s"
            )

    def disarm(self) -> None:
        """A poll is here (or held): the client is present."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def hold(self, timeout: float, release: Callable[[], None]) -> None:
        """Long-poll: call `release` once a frame is queued, the transport closes, or `timeout`
        passes. One held poll at a time: a new one releases the previous one, which answers
        with what it has."""
        self.release()
        self._release = release
        self._hold_timer = asyncio.get_running_loop().call_later(timeout, self.release)

    def release(self) -> None:
        """Answer the held poll now, if there is one."""
        release, self._release = self._release, None
        self._release_due = False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if release is not None:
            release()


# Transports to release on the next loop turn, and the loop that turn is scheduled on (None:
# not scheduled). A loop that stopped with a turn pending leaves its list to the next loop.
_due: list[PollTransport] = []
_due_loop: asyncio.AbstractEventLoop | None = None


def _release_soon(transport: PollTransport) -> None:
    global _due_loop
    loop = asyncio.get_running_loop()
    if _due_loop is not loop:
        _due.clear()
        _due_loop = loop
        loop.call_soon(_release_due)
    _due.append(transport)


def _release_due() -> None:
    global _due_loop
    due = _due[:]
    _due.clear()
    _due_loop = None
    for transport in due:
        if transport._release_due:
            transport.release()
