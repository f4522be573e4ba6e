"""The `polling` and `longpoll` transports: a per-session queue that GET requests drain.

Sans-I/O apart from one future: `PollTransport` is the hub's `Transport` for a polling client
for as long as the client keeps polling. Frames (NDJSON lines, framed once and shared with
every other poller) wait in a queue; each frame has an index. A poll takes the frames after
the cursor it acknowledges, and they stay queued until a later poll acknowledges them, so a
response lost in transit is simply sent again. `polling` answers at once; `longpoll` holds the
request until a frame arrives or `longpoll_timeout` passes.

A held long-poll costs no task and no timer of its own: `hold` keeps one callback and a
deadline. Every transport that a loop turn's publishes reach is released by a single
`call_soon` for all of them, so one message to 10,000 held polls schedules one callback, not
10,000; and one sweep every `SWEEP_PERIOD` seconds answers the held polls whose
`longpoll_timeout` passed and closes the clients whose `poll_grace` passed, instead of two
timers made and cancelled per poll.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..envelope import encode_text
from .base import Framing
from .stream import NDJSON_FRAMING

__all__ = ["PollBatch", "PollTransport"]

POLL_KINDS: Final = ("polling", "longpoll")
#: How often held polls and idle clients are checked: their timeouts fire up to this late.
SWEEP_PERIOD: Final = 0.25


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
        self._release_due = False  # in the batch released on the next loop turn
        # Loop times (0.0: none): answer the held poll / close for want of a poll.
        self._hold_until = 0.0
        self._idle_until = 0.0
        self._grace = 0.0
        self._on_close = on_close
        self.close_code: int | None = None
        self.handler: Any = None  # the session's envelope handler (set by the app)

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
            _timers().release_soon(self)

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
        if self.close_code is None:
            timers = _timers()
            self._grace = grace
            self._idle_until = timers.loop.time() + grace
            timers.watch(self, self._idle_until)

    def disarm(self) -> None:
        """A poll is here (or held): the client is present."""
        self._idle_until = 0.0

    def hold(self, timeout: float, release: Callable[[], None]) -> None:
        """Call `release` on the next loop turn if frames are queued (or `timeout` <= 0, or
        closed), else once a frame is queued, the transport closes, or `timeout` passes. The
        turn's wait lets what is being published now (a broker delivers a turn or two after
        the publish was answered) join this answer. One held poll at a time: a new one
        releases the previous one, which answers with what it has."""
        self.release()
        timers = _timers()
        self._release = release
        if self._frames or timeout <= 0 or self.close_code is not None:
            self._release_due = True
            timers.release_soon(self)
        else:
            self._hold_until = timers.loop.time() + timeout
            timers.watch(self, self._hold_until)

    async def wait(self, timeout: float) -> None:
        """`hold` for a coroutine: until a frame is queued, the transport closes or `timeout`
        passes, and at least until the next loop turn. A newer wait or hold ends this one."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hold(timeout, functools.partial(_resolve, waiter))
        await waiter

    def release(self) -> None:
        """Answer the held poll now, if there is one."""
        release, self._release = self._release, None
        self._release_due = False
        self._hold_until = 0.0
        if release is not None:
            release()

    def _check(self, now: float) -> float:
        """The sweep: act on a passed deadline; the next one (0.0: none left)."""
        if self._hold_until and self._hold_until <= now:
            self.release()
        if self._idle_until and self._idle_until <= now:
            self._idle_until = 0.0
            self.close(4002, f"no poll within {self._grace} s")
        hold, idle = self._hold_until, self._idle_until
        return min(hold, idle) if hold and idle else hold or idle


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _PollTimers:
    """One loop's batch of transports to release on its next turn, and its deadline sweep."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: list[PollTransport] = []
        self._watched: set[PollTransport] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        # No watched deadline is earlier than this: until then a sweep has nothing to check.
        # (Deadlines only move later while watched, as polls come and go.)
        self._earliest = math.inf

    def release_soon(self, transport: PollTransport) -> None:
        if not self._due:
            self.loop.call_soon(self._release_due)
        self._due.append(transport)

    def _release_due(self) -> None:
        due, self._due = self._due, []
        for transport in due:
            if transport._release_due:
                transport.release()

    def watch(self, transport: PollTransport, deadline: float) -> None:
        self._watched.add(transport)
        if deadline < self._earliest:
            self._earliest = deadline
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(SWEEP_PERIOD, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        if now >= self._earliest:
            # A check may close a transport, and its handlers may watch another one: that
            # lowers self._earliest meanwhile, so it starts from infinity and is merged after.
            self._earliest = math.inf
            earliest = math.inf
            watched = self._watched
            for transport in list(watched):
                deadline = transport._check(now)
                if deadline:
                    earliest = min(earliest, deadline)
                else:
                    watched.discard(transport)
            self._earliest = min(self._earliest, earliest)
        self._sweeper = self.loop.call_later(SWEEP_PERIOD, self._sweep) if self._watched else None


_current: _PollTimers | None = None


def _timers() -> _PollTimers:
    """The running loop's `_PollTimers` (a new loop, as in tests, gets fresh ones)."""
    global _current
    loop = asyncio.get_running_loop()
    if _current is None or _current.loop is not loop:
        _current = _PollTimers(loop)
    return _current
