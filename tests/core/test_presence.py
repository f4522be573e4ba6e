"""Presence without sockets: the table's model, the memory broker, and the hub's envelopes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pushwire import Config, ConnectRequest, Hub, Identity, Session
from pushwire.broker.memory import MemoryBroker
from pushwire.clock import ManualClock
from pushwire.core.presence import Presence
from pushwire.errors import PresenceInfoTooLarge
from pushwire.presence import PresenceEvent, PresenceTable, encode_entry
from pushwire.transports.stream import NDJSON_FRAMING
from pushwire.transports.websocket.framing import RAW_FRAMING
from tests.helpers import RecordingTransport


def entry(member: str, user: str | None = None, **info: Any) -> bytes:
    return encode_entry(member, user, info)


def envelopes(transport: RecordingTransport) -> list[dict[str, Any]]:
    """Every NDJSON envelope the hub wrote, in order."""
    lines = b"".join(transport.written).splitlines()
    return [orjson.loads(line) for line in lines if line]


def users(envelope: dict[str, Any]) -> list[str]:
    return sorted(member["user"] for member in envelope["members"])


# -- the table: the model both brokers follow ---------------------------------------------------


def test_joins_and_leaves_count_and_version_every_change_once() -> None:
    table = PresenceTable()
    (joined,) = table.join("room", "a", entry("a", "alice"))
    assert (joined.kind, joined.version, joined.count) == ("join", 1, 1)
    assert table.join("room", "a", entry("a", "alice")) == []  # already there: no event
    table.join("room", "b", entry("b", "bob"))
    (left,) = table.leave("room", ["a", "nobody"])
    assert (left.kind, left.version, left.count, left.entry) == ("leave", 3, 1, entry("a", "alice"))
    snapshot = table.snapshot("room", 10)
    assert (snapshot.version, snapshot.count, snapshot.entries) == (3, 1, [entry("b", "bob")])
    table.leave("room", ["b"])
    assert table.snapshot("room", 10).count == 0 and table.count("room") == 0


def test_entries_not_refreshed_expire_and_their_leaves_are_announced() -> None:
    table = PresenceTable()
    table.join("room", "dead", entry("dead", "d"), expires=10.0)
    table.join("room", "alive", entry("alive", "a"), expires=10.0)
    table.join("other", "dead2", entry("dead2", "d"), expires=10.0)
    table.refresh("room", ["alive"], expires=20.0)
    assert table.expire(now=9.9) == []
    gone = table.expire(now=10.0)
    assert sorted((e.channel, e.kind, e.count) for e in gone) == [
        ("other", "leave", 0),
        ("room", "leave", 1),
    ]
    assert table.snapshot("room", 10).entries == [entry("alive", "a")]
    assert [e.entry for e in table.expire(now=20.0)] == [entry("alive", "a")]


def test_a_snapshot_lists_at_most_the_limit_but_counts_everyone() -> None:
    table = PresenceTable()
    for i in range(5):
        table.join("room", f"m{i}", entry(f"m{i}", f"u{i}"))
    snapshot = table.snapshot("room", 3)
    assert snapshot.count == 5
    assert snapshot.entries == [entry(f"m{i}", f"u{i}") for i in range(3)]  # join order


def test_a_change_nobody_hears_is_versioned_but_makes_no_event() -> None:
    table = PresenceTable()
    assert table.join("room", "a", entry("a"), announce=False) == []
    assert table.join("room", "b", entry("b"), announce=False) == []
    (joined,) = table.join("room", "c", entry("c"))
    assert (joined.version, joined.count) == (3, 3)  # the unheard changes counted
    assert table.leave("room", ["a"], announce=False) == []
    (left,) = table.leave("room", ["b"])
    assert (left.version, left.count) == (5, 1)
    assert table.snapshot("room", 10).version == 5


def test_a_quiet_add_is_a_join_nobody_hears() -> None:
    """`add` (the memory broker's join of an unwatched channel) is `join(announce=False)`:
    versioned once per member, its entry replaced, an expiry it had dropped."""
    joined, added = PresenceTable(), PresenceTable()
    for table in (joined, added):
        table.join("room", "a", entry("a"), expires=5.0)
    joined.join("room", "a", entry("a", "ann"), announce=False)
    added.add("room", "a", entry("a", "ann"))
    for member in ("b", "b", "c"):
        joined.join("room", member, entry(member), announce=False)
        added.add("other", member, entry(member))
        added.add("room", member, entry(member))
    assert added.snapshot("room", 10) == joined.snapshot("room", 10)
    assert added.snapshot("room", 10).version == 3  # a, b, c: once each
    assert joined.expire(10.0) == added.expire(10.0) == []  # "a" no longer expires
    assert added.snapshot("other", 10).entries == [entry("b"), entry("c")]


def test_an_entry_is_the_json_of_member_user_and_info_in_that_order() -> None:
    cases: list[tuple[str, str | None, dict[str, Any]]] = [
        ("m", "u", {"a": [1, "x"]}),
        ('m"', None, {}),
        ("é", "ü\n", {"k": 1.5}),
    ]
    for member, user, info in cases:
        encoded = encode_entry(member, user, info)
        assert encoded == orjson.dumps({"member": member, "user": user, "info": info})
        assert list(json.loads(encoded)) == ["member", "user", "info"]


# -- the hub on the memory broker --------------------------------------------------------------


def join(hub: Hub, user: str | None, channel: str = "room", **info: Any) -> Session:
    session = hub.lifecycle.open(RecordingTransport(NDJSON_FRAMING), user, info, resumable=True)
    hub.channels.subscribe(session, channel)
    return session


async def test_a_watcher_gets_the_members_with_their_info_then_joins_and_leaves() -> None:
    hub = Hub()
    alice = join(hub, "alice", colour="red")
    join(hub, None)  # an anonymous member counts, and is listed without a user
    watcher = join(hub, "carol")
    await hub.watch_presence(watcher, "room")
    transport = watcher.transport
    assert isinstance(transport, RecordingTransport)
    (snapshot,) = envelopes(transport)
    assert snapshot["type"] == "presence" and snapshot["count"] == 3
    assert snapshot["truncated"] is False
    members = {m["user"]: m for m in snapshot["members"]}
    assert members["alice"] == {
        "member": alice.public_id,
        "user": "alice",
        "info": {"colour": "red"},
    }
    assert alice.id not in json.dumps(snapshot)  # the secret session id is never shown

    transport.written.clear()
    dave = join(hub, "dave")
    hub.channels.unsubscribe(alice, "room")
    assert transport.written == []  # written at the end of the turn, in one write
    await asyncio.sleep(0)
    assert len(transport.written) == 1
    assert [(e["type"], e["member"]["user"], e["count"]) for e in envelopes(transport)] == [
        ("join", "dave", 4),
        ("leave", "alice", 3),
    ]
    transport.written.clear()
    hub.close_session(dave, 1000, "")
    await asyncio.sleep(0)
    assert [(e["type"], e["member"]["member"]) for e in envelopes(transport)] == [
        ("leave", dave.public_id)
    ]


async def test_a_burst_of_joins_reaches_a_watcher_in_one_write_with_growing_counts() -> None:
    hub = Hub()
    watcher = join(hub, "w")
    await hub.watch_presence(watcher, "room")
    transport = watcher.transport
    assert isinstance(transport, RecordingTransport)
    transport.written.clear()
    for i in range(50):
        session = hub.lifecycle.open(RecordingTransport(RAW_FRAMING), f"u{i}")
        hub.channels.subscribe(session, "room")
    await asyncio.sleep(0)
    assert len(transport.written) == 1
    assert [e["count"] for e in envelopes(transport)] == list(range(2, 52))


async def test_a_snapshot_over_the_bound_says_truncated_and_keeps_the_count() -> None:
    hub = Hub(config=Config(presence_max_members=3))
    for i in range(5):
        join(hub, f"u{i}")
    snapshot = await hub.presence("room")
    assert snapshot.count == 5 and len(snapshot.entries) == 3
    watcher = join(hub, "w")
    await hub.watch_presence(watcher, "room")
    assert isinstance(watcher.transport, RecordingTransport)
    (sent,) = envelopes(watcher.transport)
    assert (sent["count"], len(sent["members"]), sent["truncated"]) == (6, 3, True)


async def test_a_reconnecting_session_stays_present_and_leaves_when_its_grace_ends() -> None:
    clock = ManualClock()
    hub = Hub(config=Config(session_grace=0.2), clock=clock)
    watcher = join(hub, "w")
    await hub.watch_presence(watcher, "room")
    assert isinstance(watcher.transport, RecordingTransport)
    seen = watcher.transport
    flaky = join(hub, "flaky")
    await asyncio.sleep(0)
    seen.written.clear()

    # The connection drops and the client comes back, resubscribing: nobody sees it flap.
    hub.lifecycle.detach(flaky, flaky.transport, 1006, "dropped", final=False)  # type: ignore[arg-type]
    assert (await hub.presence("room")).count == 2
    back = RecordingTransport(NDJSON_FRAMING)
    assert hub.lifecycle.resume(flaky.id, flaky.secret, flaky.endpoint, back) is flaky
    hub.channels.subscribe(flaky, "room")
    await asyncio.sleep(0)
    assert seen.written == []

    # It drops again and never returns: it leaves once its grace is over.
    hub.lifecycle.detach(flaky, back, 1006, "dropped", final=False)
    clock.advance(0.19)
    await asyncio.sleep(0)  # a leave would go out at the end of this turn
    assert seen.written == []
    clock.advance(0.01)
    await asyncio.sleep(0)
    assert [(e["type"], e["member"]["user"], e["count"]) for e in envelopes(seen)] == [
        ("leave", "flaky", 1)
    ]


async def test_a_new_watcher_sees_each_change_once_even_while_its_snapshot_is_read() -> None:
    class SlowSnapshots(MemoryBroker):
        """Joins land while the snapshot read is in flight, as with a remote broker."""

        reads = 0

        async def presence(self, channel: str, limit: int) -> Any:
            snapshot = await super().presence(channel, limit)
            late = f"late{self.reads}"
            self.reads += 1
            self.presence_join(channel, late, entry(late, late))
            await asyncio.sleep(0)  # the read is in flight: the loop turns
            return snapshot

    hub = Hub(SlowSnapshots())
    early = join(hub, "early")
    await hub.watch_presence(early, "room")
    watcher = join(hub, "w")
    await hub.watch_presence(watcher, "room")
    await asyncio.sleep(0)
    assert isinstance(watcher.transport, RecordingTransport)
    got = envelopes(watcher.transport)
    assert [e["type"] for e in got] == ["presence", "join"]
    assert users(got[0]) == ["early", "late0", "w"] and got[1]["member"]["user"] == "late1"
    assert isinstance(early.transport, RecordingTransport)
    assert [(e["type"], e.get("member", {}).get("user")) for e in envelopes(early.transport)] == [
        ("presence", None),
        ("join", "late0"),
        ("join", "w"),
        ("join", "late1"),
    ]


async def test_the_connect_handler_attaches_bounded_public_info() -> None:
    hub = Hub(config=Config(max_presence_info=40))
    request = ConnectRequest("/pushwire", "websocket", [], {}, user="alice")

    @hub.on_connect
    def plain(request: ConnectRequest) -> str | None:
        return request.user

    assert await hub.access.identify(request) == Identity("alice", {})

    @hub.on_connect
    def with_info(request: ConnectRequest) -> dict[str, Any]:
        return {"user": request.user, "info": {"via": request.transport}}

    assert await hub.access.identify(request) == Identity("alice", {"via": "websocket"})
    assert await hub.access.authorize(request) == "alice"

    @hub.on_connect
    def too_much(request: ConnectRequest) -> Identity:
        return Identity("alice", {"bio": "x" * 100})

    with pytest.raises(PresenceInfoTooLarge, match=r"presence info over size limit \(\d+ > 40"):
        await hub.access.identify(request)

    @hub.on_connect
    def wrong(request: ConnectRequest) -> int:
        return 7

    with pytest.raises(TypeError, match="connect handler must return"):
        await hub.access.identify(request)


async def test_after_a_broker_outage_each_watcher_gets_a_fresh_snapshot_then_what_follows() -> None:
    broker = MemoryBroker()
    presence = Presence(broker, Config())  # the part alone, wired as the hub wires it
    broker.attach_presence(presence.event)
    transport = RecordingTransport(NDJSON_FRAMING)
    watcher = Session(transport, "w")
    watcher.channels.add("room")  # subscribed, as far as presence is concerned
    presence.join(watcher, "room")
    await presence.watch(watcher, "room")
    # A join whose event the outage lost: only the broker's table knows of it.
    broker.presence_table.join("room", "lost", entry("lost", "lost"))
    transport.written.clear()

    await presence.resnapshot(["room"])
    broker.presence_join("room", "after", entry("after", "after"))
    await asyncio.sleep(0)
    got = envelopes(transport)
    assert [e["type"] for e in got] == ["presence", "join"]
    assert users(got[0]) == ["lost", "w"] and got[1]["member"]["user"] == "after"


class CountingBroker(MemoryBroker):
    """The memory broker, counting the presence events it delivers."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[str] = []

    def attach_presence(self, deliver: Callable[[PresenceEvent], None]) -> None:
        def counted(event: PresenceEvent) -> None:
            self.delivered.append(event.channel)
            deliver(event)

        super().attach_presence(counted)


async def test_a_channel_nobody_watches_makes_no_presence_event_and_a_later_watcher_sees_all() -> (
    None
):
    broker = CountingBroker()
    hub = Hub(broker)
    quiet = [join(hub, f"q{i}", "quiet") for i in range(3)]
    hub.close_session(quiet[0], 1000, "")
    assert broker.delivered == []  # members, counted, but no event made: nobody watches
    watcher = join(hub, "w", "quiet")
    await hub.watch_presence(watcher, "quiet")
    transport = watcher.transport
    assert isinstance(transport, RecordingTransport)
    (snapshot,) = envelopes(transport)
    assert snapshot["count"] == 3 and users(snapshot) == ["q1", "q2", "w"]
    transport.written.clear()
    join(hub, "late", "quiet")
    hub.close_session(quiet[1], 1000, "")
    await asyncio.sleep(0)
    assert broker.delivered == ["quiet", "quiet"]
    assert [(e["type"], e["count"]) for e in envelopes(transport)] == [("join", 4), ("leave", 3)]
