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

__all__ = ["LOOP_CLOCK", "Clock", "LoopClock", "ManualClock", "OneTimer", "Timer", "time_reader"]


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


def time_reader(clock: Clock) -> Callable[[], float]:
    """What reads `clock`'s time: for the loop's clock, the running loop's own `time` (a
    `LoopClock.time` call finds the loop first, 2.4 times the cost), for code that reads the
    time once per message; `clock.time` otherwise, or with no loop running."""
    if isinstance(clock, LoopClock):
        try:
            return asyncio.get_running_loop().time
        except RuntimeError:
            pass
    return clock.time


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


class OneTimer:
    """One timeout per object at a time (setting one replaces the last), kept lazily.

    Setting a timeout that falls after the pending timer's keeps that timer: when it fires
    early it re-arms for what is left. So a request on a keep-alive connection, which lifts
    the idle timeout (`_disarm_timer`) and sets it again after the answer, makes no timer:
    making and cancelling one per request was ~5% of a long-poll server's time (py-spy).
    """

    # `clock` is the subclass's: a slot, or read from an object it shares with others (one
    # slot fewer a connection).
    __slots__ = ("timer", "timer_armed", "timer_callback", "timer_due")
    timer: Timer | None
    timer_armed: float  # when `timer` fires
    timer_due: float  # when the timeout is due (at or after timer_armed while one is set)
    timer_callback: Callable[[], object] | None

    @property
    def clock(self) -> Clock:
        """The clock the timer runs on."""
        raise NotImplementedError

    def _init_timer(self) -> None:
        """No timer yet (the subclasses' __init__ calls this)."""
        self.timer = None
        self.timer_armed = self.timer_due = 0.0
        self.timer_callback = None

    def _set_timer(self, delay: float, callback: Callable[[], object]) -> None:
        self._set_timer_at(self.clock.time() + delay, callback)

    def _set_timer_at(self, due: float, callback: Callable[[], object]) -> None:
        self.timer_due = due
        self.timer_callback = callback
        timer = self.timer
        if timer is not None:
            if self.timer_armed <= due:
                return
            timer.cancel()
        self.timer_armed = due
        self.timer = self.clock.call_at(due, self._timer_fired)

    def defer_timer(self, due: float, callback: Callable[[], object]) -> None:
        """`_set_timer` for `due` without the timer: `arm_deferred` makes it later, if the
        timeout is still wanted then. A new connection's first timeout is set so: its first
        request mostly comes before its door arms the timeouts of the connections it accepted
        meanwhile (`Door.defer_timeout`), and then it needs no timer. With a timer running
        already (a TLS handshake's), it is `_set_timer` for `due`."""
        if self.timer is not None:
            self._set_timer_at(due, callback)
            return
        self.timer_due = due
        self.timer_callback = callback

    def arm_deferred(self) -> None:
        """Make the timer of a timeout `defer_timer` set, unless it was lifted or replaced."""
        if self.timer is None and self.timer_callback is not None:
            self.timer_armed = self.timer_due
            self.timer = self.clock.call_at(self.timer_due, self._timer_fired)

    def _disarm_timer(self) -> None:
        """No timeout for now; the pending timer stays, to be reused or to fire idle."""
        self.timer_callback = None

    def _cancel_timer(self) -> None:
        """No timeout, and no pending timer (it would keep this object alive until it fires)."""
        self.timer_callback = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timer_fired(self) -> None:
        self.timer = None
        callback = self.timer_callback
        if callback is None:
            return
        if self.timer_due > self.timer_armed:  # set later since this timer was made: re-arm
            self.timer_armed = self.timer_due
            self.timer = self.clock.call_at(self.timer_due, self._timer_fired)
            return
        self.timer_callback = None
        callback()
