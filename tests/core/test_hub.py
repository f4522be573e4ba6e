"""The hub without sockets: encode-once fan-out, channels, users, bounds."""

from __future__ import annotations

import asyncio

import pytest

from pushwire import BadRequest, Config, Hub, Session
from pushwire.clock import ManualClock
from pushwire.core import MemorySessionStore
from pushwire.core.transport import Framing
from pushwire.errors import LimitReached
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING, RAW_FRAMING
from tests.helpers import RecordingTransport


def short_frame(opcode: int, payload: bytes) -> bytes:
    """A server frame under 126 bytes, written out as RFC 6455 5.2 lays it down."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, len(payload)]) + payload


def subscribers(
    hub: Hub, count: int, framing: Framing, channel: str = "room"
) -> list[RecordingTransport]:
    transports = [RecordingTransport(framing) for _ in range(count)]
    for transport in transports:
        hub.channels.subscribe(hub.lifecycle.open(transport), channel)
    return transports


@pytest.mark.parametrize("count", [1, 200])
async def test_a_channel_message_is_framed_once_per_framing_whatever_the_subscriber_count(
    count: int,
) -> None:
    hub = Hub()
    raw = subscribers(hub, count, RAW_FRAMING)
    enveloped = subscribers(hub, count, ENVELOPE_FRAMING)
    for i in range(10):
        await hub.publish("room", f"message {i}")
        hub.channels.flush()  # one message a batch here; batching has its own test
    # Two framings in use, ten messages: twenty framings, for 2 or for 400 subscribers.
    assert hub.stats.frames_encoded == 20
    assert hub.stats.deliveries == 20 * count
    for group in (raw, enveloped):
        for transport in group:
            # Not equal copies: the very same bytes objects.
            assert all(a is b for a, b in zip(transport.written, group[0].written, strict=True))
    assert raw[0].written[0] == short_frame(0x1, b"message 0")


async def test_messages_carry_growing_offsets_in_one_epoch() -> None:
    hub = Hub()
    first = await hub.publish("room", "a")
    second = await hub.publish("room", "b")
    assert first.epoch == second.epoch
    assert second.offset == first.offset + 1


async def test_unsubscribed_and_closed_sessions_get_nothing() -> None:
    hub = Hub()
    stays, leaves, closes = subscribers(hub, 3, RAW_FRAMING)
    sessions = list(hub.sessions.values())
    hub.channels.unsubscribe(sessions[1], "room")
    hub.close_session(sessions[2], 1000, "")
    await hub.publish("room", "after")
    hub.channels.flush()
    assert stays.written == [short_frame(0x1, b"after")]
    assert leaves.written == closes.written == []
    assert hub.channels.subscriber_count("room") == 1


async def test_send_reaches_every_session_of_a_user_at_its_inbox_position() -> None:
    hub = Hub()
    phone, laptop, other = (RecordingTransport(ENVELOPE_FRAMING) for _ in range(3))
    hub.lifecycle.open(phone, "alice")  # raw-like sessions: no recovery to wait for
    hub.lifecycle.open(laptop, "alice")
    hub.lifecycle.open(other, "bob")
    assert hub.send("alice", "one") == 2
    assert hub.send("alice", b"\x00") == 2
    epoch = (await hub.direct.inbox_position("alice")).epoch
    first = ENVELOPE_FRAMING.frame_direct("one", epoch, 1)
    assert first == short_frame(
        0x1, b'{"type":"message","epoch":"%b","offset":1,"data":"one"}' % epoch.encode()
    )
    assert phone.written[0] == laptop.written[0] == first
    assert phone.written[1] == ENVELOPE_FRAMING.frame_direct(b"\x00", epoch, 2)
    assert other.written == []


async def test_with_the_memory_broker_a_direct_message_is_written_at_once() -> None:
    hub = Hub()
    assert not hub.spans_nodes
    phone = RecordingTransport(ENVELOPE_FRAMING)
    hub.lifecycle.open(phone, "alice")
    # No broker round trip: written in the first step of the call, without waiting.
    sending = asyncio.ensure_future(hub.send_everywhere("alice", "one"))
    await asyncio.sleep(0)
    assert len(phone.written) == 1
    sent = await sending
    assert sent.receivers == 1  # one process reached
    assert phone.written == [ENVELOPE_FRAMING.frame_direct("one", sent.message.epoch, 1)]
    assert (await hub.send_everywhere("nobody", "void")).receivers == 0
    await hub.direct_messages.prepare_user("alice")  # nothing to prepare in one process
    assert len(phone.written) == 1


async def test_invalid_channel_names_are_refused() -> None:
    hub = Hub(config=Config(max_channel_name=5))
    with pytest.raises(BadRequest, match="invalid channel name 'bad name'"):
        await hub.publish("bad name", "x")
    assert hub.access.check_channel("a" * 5) == "aaaaa"
    with pytest.raises(BadRequest, match="invalid channel name 'aaaaaa'"):
        hub.access.check_channel("a" * 6)


async def test_the_subscription_bound_allows_exactly_max_subscriptions() -> None:
    hub = Hub(config=Config(max_subscriptions=2))
    session = hub.lifecycle.open(RecordingTransport(RAW_FRAMING))
    for channel in ("a", "b"):
        await hub.access.authorize_subscribe(session, channel)
        hub.channels.subscribe(session, channel)
    await hub.access.authorize_subscribe(session, "a")  # already in: no new subscription
    with pytest.raises(LimitReached, match=r"subscription limit reached \(2 channels\)"):
        await hub.access.authorize_subscribe(session, "c")


async def test_what_one_loop_turn_publishes_reaches_each_subscriber_in_one_write() -> None:
    hub = Hub()
    transports = subscribers(hub, 3, RAW_FRAMING)
    for i in range(5):
        hub.publish_nowait("room", f"m{i}")
    assert all(t.written == [] for t in transports)  # not yet: at the end of this turn
    await asyncio.sleep(0)  # the turn ends
    expected = b"".join(short_frame(0x1, f"m{i}".encode()) for i in range(5))
    for transport in transports:
        assert transport.written == [expected]
        assert transport.written[0] is transports[0].written[0]
    assert hub.stats.frames_encoded == 5


async def test_a_subscriber_joining_mid_turn_gets_only_what_follows_its_joining() -> None:
    hub = Hub()
    (early,) = subscribers(hub, 1, RAW_FRAMING)
    hub.publish_nowait("room", "before")
    (late,) = subscribers(hub, 1, RAW_FRAMING)
    hub.publish_nowait("room", "after")
    hub.channels.flush()
    assert early.written == [short_frame(0x1, b"before"), short_frame(0x1, b"after")]
    assert late.written == [short_frame(0x1, b"after")]


async def test_a_large_batch_is_written_before_the_turn_ends() -> None:
    hub = Hub()
    (transport,) = subscribers(hub, 1, RAW_FRAMING)
    for _ in range(5):
        hub.publish_nowait("room", b"x" * 100_000)
    assert len(transport.written) == 1  # 300,000 pending bytes went over MAX_BATCH_BYTES


class CountingStore(MemorySessionStore):
    """A store of the app's own (the interface is the seam): counts what the hub asks."""

    def __init__(self) -> None:
        super().__init__()
        self.added = self.removed = 0

    def add(self, session: Session) -> None:
        self.added += 1
        super().add(session)

    def remove(self, session_id: str) -> None:
        self.removed += 1
        super().remove(session_id)


async def test_sessions_live_in_the_store_the_hub_is_given() -> None:
    store = CountingStore()
    clock = ManualClock()
    hub = Hub(store=store, clock=clock)
    session = hub.lifecycle.open(RecordingTransport(ENVELOPE_FRAMING), "alice", resumable=True)
    assert store[session.id] is session and hub.sessions is store
    hub.lifecycle.detach(session, session.transport, 1006, "dropped", final=False)  # type: ignore[arg-type]
    assert store.added == 1 and store.removed == 0  # detached, kept for its grace
    assert clock.pending == 1
    assert (
        hub.lifecycle.resume(
            session.id, session.secret, session.endpoint, RecordingTransport(ENVELOPE_FRAMING)
        )
        is session
    )
    assert clock.pending == 0  # resumed: its grace no longer runs
    hub.close_session(session, 1000, "")
    assert store.removed == 1 and session.id not in store


async def test_a_handed_over_session_is_forgotten_without_a_disconnect_and_adopted_whole() -> None:
    old_hub, new_hub = Hub(), Hub()
    disconnects: list[str] = []
    old_hub.on_disconnect(lambda session, code, reason: disconnects.append(session.id))
    old = RecordingTransport(ENVELOPE_FRAMING)
    session = old_hub.lifecycle.open(old, "erin", {"room": "blue"}, resumable=True)
    old_hub.channels.subscribe(session, "room")

    old_hub.lifecycle.hand_over(session)
    assert old.closed is not None and old.closed[0] == 4004
    assert session.id not in old_hub.sessions and old_hub.send("erin", "gone") == 0
    assert old_hub.channels.subscriber_count("room") == 0
    await asyncio.sleep(0)
    assert disconnects == []  # the session goes on elsewhere: not a disconnect

    new = RecordingTransport(ENVELOPE_FRAMING)
    adopted = new_hub.lifecycle.adopt(new, "erin", {"room": "blue"})
    assert adopted.id != session.id and adopted.resumable and adopted.info == {"room": "blue"}
    new_hub.send("erin", "four")
    assert new.written == []  # not before the welcome: its recovery writes it
    await new_hub.direct_messages.recover(adopted, None)
    epoch = (await new_hub.direct.inbox_position("erin")).epoch
    assert new.written[-1] == ENVELOPE_FRAMING.frame_direct("four", epoch, 1)


async def test_disconnect_closes_the_users_connected_and_detached_sessions_for_good() -> None:
    hub = Hub()
    connected, detached, other = (RecordingTransport(ENVELOPE_FRAMING) for _ in range(3))
    first = hub.lifecycle.open(connected, "carol", resumable=True)
    second = hub.lifecycle.open(detached, "carol", resumable=True)
    hub.lifecycle.detach(second, detached, 1006, "", final=False)  # waiting out its grace
    kept = hub.lifecycle.open(other, "dave", resumable=True)
    ended: list[tuple[str, int, str]] = []
    both_ended = asyncio.Event()

    def disconnected(session: Session, code: int, reason: str) -> None:
        ended.append((session.id, code, reason))
        if len(ended) == 2:
            both_ended.set()

    hub.on_disconnect(disconnected)

    assert hub.disconnect("carol") == 2
    assert connected.closed == (4101, "disconnected by the server")
    assert first.closed and second.closed
    assert set(hub.sessions) == {kept.id}  # neither can be resumed
    await asyncio.wait_for(both_ended.wait(), 5)  # the disconnect handler runs as a task
    assert sorted(ended) == sorted(
        (session.id, 4101, "disconnected by the server") for session in (first, second)
    )
    assert other.closed is None
    assert hub.disconnect("carol") == 0
