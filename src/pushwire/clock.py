"""Where pushwire reads the time and sets its timers: the event loop's clock, or one a test moves.

Everything pushwire times (a detached session's grace, long-poll holds, pings and heartbeats,
header and body timeouts) goes through a `Clock`. The running loop's clock is the default;
`ManualClock` lets a test make a minute pass in one call instead of sleeping through it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

__all__ = ["LOOP_CLOCK", "Clock", "LoopClock", "ManualClock", "Timer"]


class Timer(Protocol):
    """A pending call, as `call_at` and `call_later` return it."""

    def cancel(self) -> None:
        """The call will not happen (nothing happens if it happened already)."""


class Clock(Protocol):
    """A monotonic time in seconds, and calls at a time on it."""

    def time(self) -> float:
        """Now, in seconds (only differences mean anything)."""

    def call_at(self, when: float, callback: Callable[..., object], *args: object) -> Timer:
        """Call `callback(*args)` at `when` (on this clock), or soon after."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> Timer:
        """Call `callback(*args)` `delay` seconds from now, or soon after."""


class LoopClock:
    """The running event loop's clock: `loop.time()`, `loop.call_at()`, `loop.call_later()`."""

    __slots__ = ()

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[..., object], *args: object) -> Timer:
        return asyncio.get_running_loop().call_at(when, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback, *args)


#: The default clock of every pushwire object that takes one.
LOOP_CLOCK: Clock = LoopClock()


class _ManualTimer:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[object, ...]):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to, for tests.

    Its timers run inside `advance`, in the order of their times (timers for the same time in
    the order they were set), each seeing `time()` at its own time; a timer that a callback
    sets runs in the same `advance` when it falls within it.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[..., object], *args: object) -> Timer:
        timer = _ManualTimer(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> Timer:
        return self.call_at(self._now + delay, callback, *args)

    @property
    def pending(self) -> int:
        """Timers set and neither run nor cancelled."""
        return sum(not timer.cancelled for _, _, timer in self._timers)

    def advance(self, seconds: float) -> None:
        """Move the time `seconds` on, running every timer due on the way.

        Raises:
            ValueError: `seconds` is negative (a monotonic clock does not go back).
        """
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        end = self._now + seconds
        timers = self._timers
        while timers and timers[0][0] <= end:
            when, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.cancelled = True  # ran: cancelling it now does nothing
            timer.callback(*timer.args)
        self._now = end
