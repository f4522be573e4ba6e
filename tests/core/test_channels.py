"""Channels on their own: catch-ups hold live messages, recovery fills in or tells the gap,
and a channel whose snapshot is being read stays subscribed."""

from __future__ import annotations

import asyncio

import pytest

from pushwire import Config, Hub
from pushwire.broker.base import DeliverCallback, History
from pushwire.broker.memory import MemoryBroker
from pushwire.core import HubStats, Session
from pushwire.core.channels import Channels
from pushwire.core.presence import Presence
from pushwire.core.tasks import BackgroundTasks
from pushwire.errors import Unavailable
from pushwire.message import Message, Position
from pushwire.presence import PresenceSnapshot
from pushwire.transports.stream import NDJSON_FRAMING
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING
from tests.helpers import RecordingTransport


class FlakyBroker(MemoryBroker):
    """A broker whose connection can drop: what is published while it is `down` goes into
    history but reaches nobody, as with a networked broker that lost its subscriptions."""

    def __init__(self, history_size: int) -> None:
        super().__init__(history_size)
        self.down = False
        self._live: DeliverCallback | None = None

    def attach(self, deliver: DeliverCallback) -> None:
        self._live = deliver
        super().attach(self._deliver_unless_down)

    def _deliver_unless_down(self, message: Message) -> None:
        if not self.down and self._live is not None:
            self._live(message)

    def lose(self, channel: str) -> None:
        """The broker forgets the channel, as a Redis restarted without persistence does:
        its next message starts a new epoch."""
        del self._streams[channel]


def channels_on(broker: MemoryBroker) -> Channels:
    """The channels part alone, wired to `broker` as the hub wires it."""
    config = Config()
    channels = Channels(broker, config, Presence(broker, config), HubStats(), BackgroundTasks())
    broker.attach(channels.deliver)
    return channels


def subscriber(channels: Channels, channel: str = "room") -> RecordingTransport:
    transport = RecordingTransport(ENVELOPE_FRAMING)
    channels.subscribe(Session(transport), channel)
    return transport


async def test_messages_wait_while_a_channel_is_held_and_follow_in_one_write() -> None:
    broker = MemoryBroker()
    channels = channels_on(broker)
    held, other = subscriber(channels), subscriber(channels, "other")
    with channels.holding("room"):
        broker.publish("room", "one")
        broker.publish("other", "elsewhere")
        channels.flush()
        assert held.written == []  # a catch-up is being written: live messages wait
        assert len(other.written) == 1  # other channels keep flowing
        broker.publish("room", "two")
    epoch = broker.last_position("room").epoch
    assert held.written == [
        ENVELOPE_FRAMING.frame_message(Message("room", epoch, 1, "one"))
        + ENVELOPE_FRAMING.frame_message(Message("room", epoch, 2, "two"))
    ]


async def test_after_an_outage_history_fills_in_and_what_it_no_longer_holds_is_a_gap() -> None:
    broker = FlakyBroker(history_size=3)
    channels = channels_on(broker)
    transport = subscriber(channels)
    broker.publish("room", "a")
    channels.flush()
    broker.down = True
    for text in "bcdef":  # history keeps d, e and f: b and c are lost
        broker.publish("room", text)
    broker.down = False
    transport.written.clear()

    await channels.recover(["room"])
    epoch = broker.last_position("room").epoch
    gap = {
        "type": "gap",
        "channel": "room",
        "from": {"epoch": epoch, "offset": 1},
        "to": {"epoch": epoch, "offset": 3},
    }
    assert transport.written == [
        ENVELOPE_FRAMING.frame_control(gap),
        b"".join(
            ENVELOPE_FRAMING.frame_message(Message("room", epoch, offset, text))
            for offset, text in ((4, "d"), (5, "e"), (6, "f"))
        ),
    ]
    await channels.recover(["room"])  # nothing new: nothing written twice
    assert len(transport.written) == 2


class SlowSnapshots(MemoryBroker):
    """Snapshot reads wait until the test lets them finish; unsubscriptions are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.unsubscribed: list[str] = []
        self.answer = asyncio.Event()

    async def unsubscribe(self, channel: str) -> None:
        self.unsubscribed.append(channel)

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        await self.answer.wait()
        return await super().presence(channel, limit)


async def test_a_channel_stays_subscribed_while_a_snapshot_is_read_then_ends() -> None:
    broker = SlowSnapshots()
    hub = Hub(broker)
    session = hub.lifecycle.open(RecordingTransport(NDJSON_FRAMING), "w")
    hub.channels.subscribe(session, "room")
    watching = asyncio.ensure_future(hub.watch_presence(session, "room"))
    await asyncio.sleep(0)  # the snapshot read is in flight
    hub.channels.unsubscribe(session, "room")
    await asyncio.sleep(0)
    assert broker.unsubscribed == []  # the events after the snapshot must keep coming
    broker.answer.set()
    await watching
    await asyncio.sleep(0)  # the unsubscription runs in the background
    assert broker.unsubscribed == ["room"]
    assert hub.channels.subscriber_count("room") == 0


async def test_an_epoch_change_that_lost_nothing_here_is_no_gap() -> None:
    broker = FlakyBroker(history_size=3)
    channels = channels_on(broker)
    transport = subscriber(channels)
    broker.publish("room", "a")
    broker.publish("room", "b")
    channels.flush()
    broker.down = True
    broker.lose("room")
    broker.publish("room", "c")  # the new epoch's first message, missed live
    broker.down = False
    transport.written.clear()

    await channels.recover(["room"])
    epoch = broker.last_position("room").epoch
    assert transport.written == [ENVELOPE_FRAMING.frame_message(Message("room", epoch, 1, "c"))]


async def test_an_epoch_change_whose_new_history_does_not_reach_offset_1_is_a_gap() -> None:
    broker = FlakyBroker(history_size=2)
    channels = channels_on(broker)
    transport = subscriber(channels)
    broker.publish("room", "a")
    channels.flush()
    old = broker.last_position("room")
    broker.down = True
    broker.lose("room")
    for text in "bcd":  # the new epoch keeps c and d: b is lost
        broker.publish("room", text)
    broker.down = False
    transport.written.clear()

    await channels.recover(["room"])
    new = broker.last_position("room").epoch
    gap = {
        "type": "gap",
        "channel": "room",
        "from": {"epoch": old.epoch, "offset": 1},
        "to": {"epoch": new, "offset": 1},
    }
    assert transport.written[0] == ENVELOPE_FRAMING.frame_control(gap)


def test_history_lost_counts_an_unknown_end_of_the_old_epoch_as_lost() -> None:
    since = Position("old", 5)
    fresh_epoch = History([Message("room", "new", 1, "x")], False, Position("new", 1))
    assert fresh_epoch.lost(since, Position("old", 5)) is None  # it ended where we are
    assert fresh_epoch.lost(since, Position("old", 6)) == Position("new", 0)  # one after us
    assert fresh_epoch.lost(since, None) == Position("new", 0)  # nobody knows: a gap
    empty = History([], False, Position("new", 0))
    assert empty.lost(since, Position("old", 5)) is None
    trimmed = History([Message("room", "old", 9, "x")], False, Position("old", 9))
    assert trimmed.lost(since, Position("old", 9)) == Position("old", 8)
    assert History([], True, Position("old", 5)).lost(since) is None


class SlowPositions(MemoryBroker):
    """Each position read takes the position at once and answers when the test says so:
    reads answered out of order, as two over a pool of Redis connections can be."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[asyncio.Event] = []
        self.asked = asyncio.Semaphore(0)

    async def position(self, channel: str) -> Position:
        position = self.last_position(channel)
        answer = asyncio.Event()
        self.answers.append(answer)
        self.asked.release()
        await answer.wait()
        return position


async def subscribe_from_now(channels: Channels, transport: RecordingTransport) -> None:
    """What a `subscribe` envelope without `since` does (endpoint/v1.py): join while held,
    read the channel's position, note it."""
    await channels.prepare("room")
    with channels.holding("room"):
        channels.subscribe(Session(transport), "room")
        stamp = channels.continuity()
        position = await channels.position("room")
        channels.note("room", position, stamp)


async def test_a_position_read_early_but_answered_late_still_gets_what_followed_it() -> None:
    # Chaos seed 6 (node kill): a node just restarted, two clients subscribing at once;
    # the later read (offset 2) answered first set where fan-out starts, so message 2,
    # after the earlier read's position, was dropped as sent already: lost silently.
    broker = SlowPositions()
    channels = channels_on(broker)
    broker.publish("room", "a")
    early, late = (RecordingTransport(ENVELOPE_FRAMING) for _ in range(2))
    first = asyncio.ensure_future(subscribe_from_now(channels, early))
    await asyncio.wait_for(broker.asked.acquire(), 10)
    broker.publish("room", "b")  # live, held while the subscribers read
    second = asyncio.ensure_future(subscribe_from_now(channels, late))
    await asyncio.wait_for(broker.asked.acquire(), 10)
    broker.answers[1].set()  # the later read answers first
    await second
    broker.answers[0].set()
    await first
    channels.flush()
    epoch = broker.last_position("room").epoch
    b = ENVELOPE_FRAMING.frame_message(Message("room", epoch, 2, "b"))
    assert early.written == [b]
    # `late` subscribed at offset 2: it gets b too, which its client drops as a duplicate
    # of its position (both clients compare offsets).
    assert late.written == [b]


class SlowHistory(FlakyBroker):
    """A flaky broker whose history reads of `slow` wait until the test lets them finish."""

    def __init__(self) -> None:
        super().__init__(history_size=100)
        self.slow: str | None = None
        self.reading = asyncio.Event()
        self.answer = asyncio.Event()

    async def history(self, channel: str, since: Position) -> History:
        if channel == self.slow:
            self.reading.set()
            await self.answer.wait()
        return await super().history(channel, since)


async def test_after_an_outage_no_channel_moves_on_live_before_its_recovery() -> None:
    # The broker's subscriptions came back (Redis restarted with persistence): every channel
    # is recovered from where it was. Live messages of a channel whose turn had not come yet
    # moved its position past what it missed, and its recovery then read from there: the
    # missed message was lost silently.
    broker = SlowHistory()
    channels = channels_on(broker)
    first, second = subscriber(channels, "one"), subscriber(channels, "two")
    broker.publish("one", "a")
    broker.publish("two", "x")
    channels.flush()
    broker.down = True
    broker.publish("two", "y")  # missed live: in history only
    broker.down = False
    broker.slow = "one"
    recovering = asyncio.ensure_future(channels.recover(["one", "two"]))
    await asyncio.wait_for(broker.reading.wait(), 10)  # the first channel's history is read
    broker.publish("two", "z")  # live, before the second channel's turn
    channels.flush()
    broker.answer.set()
    await recovering
    channels.flush()
    epoch = broker.last_position("two").epoch
    got = b"".join(second.written)
    frames = [
        ENVELOPE_FRAMING.frame_message(Message("two", epoch, offset, text))
        for offset, text in ((1, "x"), (2, "y"), (3, "z"))
    ]
    assert got == b"".join(frames)
    assert first.written == [
        ENVELOPE_FRAMING.frame_message(Message("one", epoch_of(broker, "one"), 1, "a"))
    ]


def epoch_of(broker: MemoryBroker, channel: str) -> str:
    return broker.last_position(channel).epoch


class LoadingBroker(FlakyBroker):
    """A flaky broker whose history reads fail `failures` times (Redis restarted with
    persistence answers `LOADING` while it reads its data back), then work."""

    def __init__(self) -> None:
        super().__init__(history_size=100)
        self.failures = 0
        self.failed = asyncio.Event()

    async def history(self, channel: str, since: Position) -> History:
        if self.failures:
            self.failures -= 1
            self.failed.set()
            raise Unavailable("redis unavailable: Redis is loading the dataset in memory")
        return await super().history(channel, since)


@pytest.mark.parametrize(("failures", "live"), [(1, "c"), (3, "cdefgh")])
async def test_a_recovery_refused_by_the_broker_is_retried_and_live_messages_wait(
    failures: int, live: str
) -> None:
    # Chaos, Redis restarted with persistence (long run, seed 8): the recovery's read was
    # answered LOADING and given up; the next live message moved the channel on, and what
    # the node had missed (stored by Redis) was lost silently. And however long the broker
    # refuses, live messages meanwhile are not kept in memory: the next read brings them.
    broker = LoadingBroker()
    channels = channels_on(broker)
    transport = subscriber(channels)
    broker.publish("room", "a")
    channels.flush()
    broker.down = True
    broker.publish("room", "b")  # missed live: in history only
    broker.down = False
    broker.failures = failures
    recovering = asyncio.ensure_future(channels.recover(["room"]))
    await asyncio.wait_for(broker.failed.wait(), 10)
    for text in live:
        broker.publish("room", text)  # live, while the recovery waits to try again
        channels.flush()
        assert "room" not in channels._pending  # not kept: history holds them
    await asyncio.wait_for(recovering, 30)
    channels.flush()
    epoch = broker.last_position("room").epoch
    frames = [
        ENVELOPE_FRAMING.frame_message(Message("room", epoch, offset, text))
        for offset, text in enumerate("ab" + live, start=1)
    ]
    assert b"".join(transport.written) == b"".join(frames)
    assert channels._channels["room"].rereads == 0
