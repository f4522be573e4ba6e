"""The manual clock: time moves only in `advance`, and timers run in time order within it."""

from __future__ import annotations

import asyncio

import pytest

from pushwire.clock import LOOP_CLOCK, ManualClock, OneTimer


def test_timers_run_in_time_order_each_at_its_own_time() -> None:
    clock = ManualClock(100.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: seen.append(("late", clock.time())))
    clock.call_at(101.0, lambda: seen.append(("early", clock.time())))
    clock.call_later(1.0, lambda: seen.append(("same time, set later", clock.time())))
    clock.advance(1.5)
    assert seen == [("early", 101.0), ("same time, set later", 101.0)]
    assert clock.time() == 101.5
    clock.advance(0.5)
    assert seen[-1] == ("late", 102.0)
    assert clock.pending == 0


def test_a_cancelled_timer_does_not_run_and_a_run_one_cancels_harmlessly() -> None:
    clock = ManualClock()
    seen: list[int] = []
    cancelled = clock.call_later(1.0, seen.append, 1)
    kept = clock.call_later(1.0, seen.append, 2)
    cancelled.cancel()
    assert clock.pending == 1
    clock.advance(1.0)
    kept.cancel()
    assert seen == [2]


def test_a_timer_set_by_a_timer_runs_within_the_same_advance_when_due() -> None:
    clock = ManualClock()
    seen: list[float] = []

    def first() -> None:
        seen.append(clock.time())
        clock.call_later(1.0, lambda: seen.append(clock.time()))
        clock.call_later(5.0, lambda: seen.append(clock.time()))

    clock.call_later(1.0, first)
    clock.advance(3.0)
    assert seen == [1.0, 2.0]
    assert clock.time() == 3.0
    assert clock.pending == 1


def test_the_clock_does_not_go_back() -> None:
    with pytest.raises(ValueError, match=r"a clock does not go back \(-1.0 s\)"):
        ManualClock().advance(-1.0)


async def test_the_loop_clock_is_the_running_loops() -> None:
    loop = asyncio.get_running_loop()
    fired = loop.create_future()
    before = loop.time()
    assert before <= LOOP_CLOCK.time() <= loop.time()
    LOOP_CLOCK.call_later(0.01, fired.set_result, "fired")
    assert await fired == "fired"
    assert loop.time() - before >= 0.01


class _Timed(OneTimer):
    __slots__ = ("_clock", "fired")

    def __init__(self, clock: ManualClock) -> None:
        self._init_timer()
        self._clock = clock
        self.fired: list[str] = []

    @property
    def clock(self) -> ManualClock:
        return self._clock

    def set(self, delay: float, name: str) -> None:
        self._set_timer(delay, lambda: self.fired.append(name))


def test_a_deferred_timeout_needs_arming_and_then_fires_at_its_time() -> None:
    clock = ManualClock()
    timed = _Timed(clock)
    timed.defer_timer(5.0, lambda: timed.fired.append("idle"))
    assert clock.pending == 0  # no timer until armed
    clock.advance(1.0)
    timed.arm_deferred()
    clock.advance(3.9)
    assert timed.fired == []
    clock.advance(0.1)
    assert timed.fired == ["idle"]


def test_a_deferred_timeout_over_a_running_timer_replaces_it_as_set_timer_does() -> None:
    # (a TLS connection: its handshake's timeout runs when its first timeout is deferred)
    clock = ManualClock()
    timed = _Timed(clock)
    timed.set(10.0, "handshake")
    timed.defer_timer(5.0, lambda: timed.fired.append("idle"))
    clock.advance(5.0)
    assert timed.fired == ["idle"]
