"""The in-memory broker's history bounds: per channel by count, bytes of data and age, and in
total across channels (`history_total_bytes`, data plus MESSAGE_OVERHEAD per message), the
oldest messages going first; what is trimmed is reported as lost to whoever recovers from
before it. Each bound is tested at its value and one over."""

from __future__ import annotations

from pushwire.broker.base import HistoryBounds
from pushwire.broker.memory import MESSAGE_OVERHEAD, MemoryBroker
from pushwire.clock import ManualClock
from pushwire.message import Position

COST = 100 + MESSAGE_OVERHEAD  # what one message of 100 bytes counts against the total


def broker_with(**options: int) -> tuple[MemoryBroker, ManualClock]:
    clock = ManualClock()
    return MemoryBroker(clock=clock, **options), clock  # type: ignore[arg-type]


def fill(broker: MemoryBroker, channel: str, count: int, size: int = 100) -> None:
    for index in range(count):
        broker.publish(channel, f"{index:<{size}}"[:size])


async def kept(broker: MemoryBroker, channel: str) -> tuple[list[int], Position | None]:
    """The offsets history holds for `channel`, and the last position lost (None: none)."""
    epoch = broker.last_position(channel).epoch
    since = Position(epoch, 0)
    history = await broker.history(channel, since)
    return [m.offset for m in history.messages], history.lost(since)


async def test_bytes_per_channel_at_the_bound_keep_everything() -> None:
    broker, _ = broker_with(history_bytes=400)
    fill(broker, "room", 4)
    assert await kept(broker, "room") == ([1, 2, 3, 4], None)


async def test_bytes_per_channel_one_over_trim_the_oldest_with_a_gap() -> None:
    broker, _ = broker_with(history_bytes=400)
    fill(broker, "room", 4)
    broker.publish("room", "y")  # one byte over
    offsets, lost = await kept(broker, "room")
    assert offsets == [2, 3, 4, 5]
    assert lost is not None and lost.offset == 1
    assert broker.history_held == 3 * COST + 1 + MESSAGE_OVERHEAD


async def test_a_message_over_the_channel_bound_is_delivered_but_not_kept() -> None:
    broker, _ = broker_with(history_bytes=400)
    delivered: list[object] = []
    broker.attach(delivered.append)
    broker.publish("room", "x" * 401)
    assert len(delivered) == 1
    offsets, lost = await kept(broker, "room")
    assert offsets == [] and lost is not None and lost.offset == 1
    assert broker.history_held == 0


async def test_a_namespace_byte_bound_wins_over_the_broker_s() -> None:
    broker, _ = broker_with(history_bytes=400)
    broker.set_history_policy(
        lambda channel: HistoryBounds(10, 60.0, 200) if channel.startswith("a:") else None
    )
    fill(broker, "a:room", 3)
    fill(broker, "b:room", 3)
    assert (await kept(broker, "a:room"))[0] == [2, 3]
    assert (await kept(broker, "b:room"))[0] == [1, 2, 3]


async def test_count_and_age_still_bound_each_channel() -> None:
    broker, clock = broker_with(history_size=3)
    fill(broker, "room", 4)
    assert (await kept(broker, "room"))[0] == [2, 3, 4]
    clock.advance(3601)
    assert (await kept(broker, "room"))[0] == []
    assert broker.history_held == 0


async def test_the_total_at_the_bound_keeps_every_channel() -> None:
    broker, _ = broker_with(history_total_bytes=3 * COST)
    for channel in ("a", "b", "c"):
        fill(broker, channel, 1)
    assert broker.history_held == 3 * COST
    for channel in ("a", "b", "c"):
        assert await kept(broker, channel) == ([1], None)
    assert broker.history_trimmed == 0


async def test_the_total_one_over_trims_the_oldest_message_of_any_channel() -> None:
    broker, _ = broker_with(history_total_bytes=3 * COST)
    for channel in ("a", "b", "c"):
        fill(broker, channel, 1)
    broker.publish("d", "z")
    offsets, lost = await kept(broker, "a")
    assert offsets == [] and lost is not None and lost.offset == 1
    for channel in ("b", "c", "d"):
        assert (await kept(broker, channel))[1] is None
    assert broker.history_trimmed == 1
    assert broker.history_held == 2 * COST + 1 + MESSAGE_OVERHEAD


async def test_the_total_skips_what_a_channel_trimmed_itself() -> None:
    # a's first two messages are gone by its own count bound: the total bound's next
    # victim is the oldest message still kept (a's third), not b's.
    broker, _ = broker_with(history_size=2, history_total_bytes=3 * COST)
    fill(broker, "a", 4)  # a keeps 3, 4
    fill(broker, "b", 1)
    assert broker.history_held == 3 * COST
    fill(broker, "b", 1)
    assert (await kept(broker, "a"))[0] == [4]
    assert (await kept(broker, "b"))[0] == [1, 2]
    assert broker.history_held == 3 * COST
    assert broker.history_trimmed == 1


async def test_trim_history_frees_oldest_first_and_says_how_much() -> None:
    broker, _ = broker_with()
    fill(broker, "a", 2)
    fill(broker, "b", 2)
    assert broker.trim_history(COST + 1) == 2 * COST
    assert (await kept(broker, "a"))[0] == []
    assert (await kept(broker, "b"))[0] == [1, 2]
    assert broker.trim_history(10 * COST) == 2 * COST
    assert broker.history_held == 0
    assert broker.trim_history(1) == 0


async def test_a_forgotten_channel_gives_its_bytes_back() -> None:
    broker, _ = broker_with(max_channels=2)
    fill(broker, "a", 3)
    fill(broker, "b", 3)
    fill(broker, "c", 3)  # a is forgotten
    assert broker.history_held == 6 * COST
    assert broker.trim_history(COST) == COST  # b's oldest, a's entries skipped
    assert (await kept(broker, "b"))[0] == [2, 3]


async def test_the_publish_order_stays_small_under_a_busy_channel() -> None:
    # One channel trimming itself on every publish must not grow the order deque forever.
    broker, _ = broker_with(history_size=5)
    fill(broker, "busy", 100_000, size=1)
    assert len(broker._order) <= 2 * 5 + 1024 + 1
    assert (await kept(broker, "busy"))[0] == list(range(99_996, 100_001))
    assert broker.history_held == 5 * (1 + MESSAGE_OVERHEAD)


async def test_a_byte_bound_of_zero_is_none() -> None:
    broker, _ = broker_with(history_bytes=0)
    fill(broker, "room", 3, size=10_000)
    assert (await kept(broker, "room")) == ([1, 2, 3], None)
