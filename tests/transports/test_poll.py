"""PollTransport's holding of long-polls: released by frames a loop turn later, by a newer
poll, by closing, or by its deadline; an idle client closed after its grace (sans-I/O: a real
event loop for the turns, a manual clock for the deadlines, no sockets)."""

from __future__ import annotations

import asyncio

from pushwire.clock import LOOP_CLOCK, Clock, ManualClock
from pushwire.transports.poll import SWEEP_PERIOD, PollTimers, PollTransport


def _transport(
    closed: list[tuple[int, str]] | None = None, clock: Clock = LOOP_CLOCK
) -> PollTransport:
    def on_close(transport: PollTransport, code: int, reason: str) -> None:
        if closed is not None:
            closed.append((code, reason))

    return PollTransport(
        "longpoll",
        max_frames=100,
        max_bytes=10_000,
        on_close=on_close,
        timers=PollTimers(clock),
    )


async def test_a_held_poll_is_answered_with_every_frame_of_the_turn_that_released_it() -> None:
    transport = _transport()
    waiting = asyncio.ensure_future(transport.wait(10))
    await asyncio.sleep(0)  # one loop turn: the poll is held
    assert not waiting.done()
    transport.write(b"a\n")
    transport.write(b"b\n")
    await asyncio.wait_for(waiting, 1)
    assert transport.take().body == b"a\nb\n"


async def test_a_poll_that_finds_frames_waits_one_turn_for_the_rest_of_that_turn() -> None:
    transport = _transport()
    transport.write(b"a\n")
    answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    transport.hold(10, lambda: answered.set_result(transport.take().body))
    assert not answered.done()
    transport.write(b"b\n")  # published in the same turn: joins the answer
    assert await asyncio.wait_for(answered, 1) == b"a\nb\n"


async def test_a_newer_poll_releases_the_held_one_and_closing_releases_the_last() -> None:
    transport = _transport()
    first = asyncio.ensure_future(transport.wait(10))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(transport.wait(10))
    await asyncio.wait_for(first, 1)
    assert not second.done()
    transport.close(4001, "test")
    await asyncio.wait_for(second, 1)
    assert transport.take().closed


async def test_a_held_poll_is_released_by_its_timeout_and_not_before() -> None:
    clock = ManualClock()
    transport = _transport(clock=clock)
    released: list[float] = []
    transport.hold(30.0, lambda: released.append(clock.time()))
    clock.advance(29.9)
    assert released == []
    clock.advance(SWEEP_PERIOD)
    assert len(released) == 1 and 30.0 <= released[0] <= 30.0 + SWEEP_PERIOD
    assert transport.take().body == b""


async def test_a_client_that_does_not_poll_within_its_grace_is_closed_4002() -> None:
    clock = ManualClock()
    closed: list[tuple[int, str]] = []
    transport = _transport(closed, clock)
    transport.arm(15.0)
    clock.advance(14.9)
    assert closed == []
    clock.advance(SWEEP_PERIOD)
    assert closed == [(4002, "no poll within 15.0 s")]


async def test_a_poll_within_the_grace_keeps_the_client() -> None:
    clock = ManualClock()
    closed: list[tuple[int, str]] = []
    transport = _transport(closed, clock)
    transport.arm(15.0)
    transport.disarm()  # a poll came
    released: list[float] = []
    transport.hold(25.0, lambda: released.append(clock.time()))
    clock.advance(25.0 + SWEEP_PERIOD)  # held past the grace: still present
    assert released and closed == []
