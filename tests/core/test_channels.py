"""Channels on their own: catch-ups hold live messages, recovery fills in or tells the gap,
and a channel whose snapshot is being read stays subscribed."""

from __future__ import annotations

import asyncio

from pushwire import Config, Hub
from pushwire.broker.base import DeliverCallback
from pushwire.broker.memory import MemoryBroker
from pushwire.core import HubStats, Session
from pushwire.core.channels import Channels
from pushwire.core.presence import Presence
from pushwire.core.tasks import BackgroundTasks
from pushwire.message import Message
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
