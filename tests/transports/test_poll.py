"""PollTransport's holding of long-polls: released by frames a loop turn later, by a newer
poll, by closing, or by its deadline; an idle client closed after its grace (sans-I/O: a real
event loop, no sockets)."""

from __future__ import annotations

import asyncio
import time

from pushwire.transports.poll import SWEEP_PERIOD, PollTransport


def _transport(closed: list[tuple[int, str]] | None = None) -> PollTransport:
    def on_close(code: int, reason: str) -> None:
        if closed is not None:
            closed.append((code, reason))

    return PollTransport("longpoll", max_frames=100, max_bytes=10_000, on_close=on_close)


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


async def test_a_held_poll_is_released_by_its_timeout() -> None:
    transport = _transport()
    started = time.monotonic()
    await asyncio.wait_for(transport.wait(0.3), 5)
    elapsed = time.monotonic() - started
    assert 0.29 <= elapsed < 0.3 + SWEEP_PERIOD + 1
    assert transport.take().body == b""


async def test_a_client_that_does_not_poll_within_its_grace_is_closed_4002() -> None:
    gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    transport = PollTransport(
        "longpoll", max_frames=100, max_bytes=10_000, on_close=lambda code, _: gone.set_result(code)
    )
    started = time.monotonic()
    transport.arm(0.3)
    assert await asyncio.wait_for(gone, 5) == 4002
    assert 0.29 <= time.monotonic() - started < 0.3 + SWEEP_PERIOD + 1


async def test_a_poll_within_the_grace_keeps_the_client() -> None:
    closed: list[tuple[int, str]] = []
    transport = _transport(closed)
    transport.arm(0.3)
    transport.disarm()  # a poll came
    await asyncio.wait_for(transport.wait(0.6), 5)  # held past the grace: still present
    assert closed == []
