"""Presence in Redis with two brokers playing two nodes: shared members, batched refreshes,
and members that come back after Redis lost them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from pushwire.broker.redis import RedisBroker
from pushwire.clock import ManualClock
from pushwire.errors import Unavailable
from pushwire.presence import PresenceEvent, encode_entry
from tests.redis_helpers import (
    WAIT,
    Maker,
    RedisBrokers,
    RedisServer,
    Watched,
    evalsha_calls,
)

pytestmark = pytest.mark.integration


class PresenceNode(Watched):
    """One process's broker and the presence events it delivered (attached before the broker
    starts)."""

    def __init__(self, broker: RedisBroker) -> None:
        super().__init__()
        self.broker = broker
        self.broker.attach(lambda message: None)  # the broker dispatches nothing without one
        self.broker.attach_presence(self._presence)
        self.events: list[PresenceEvent] = []

    def _presence(self, event: PresenceEvent) -> None:
        self.events.append(event)
        self.changed()

    def seen(self) -> list[tuple[str, str | None, int]]:
        return [(e.kind, orjson.loads(e.entry)["user"], e.count) for e in self.events]


@pytest.fixture
def presence_nodes(redis_brokers: RedisBrokers) -> Maker[PresenceNode]:
    """Make started presence nodes on `redis_server`; all are closed at the end."""
    return redis_brokers.maker(PresenceNode, timeout=2.0)


def entry(member: str, user: str) -> bytes:
    return encode_entry(member, user, {"colour": user[::-1]})


async def test_members_joined_on_one_node_are_seen_on_the_other_with_versions_and_counts(
    presence_nodes: Callable[..., Any],
) -> None:
    a: PresenceNode = await presence_nodes()
    b: PresenceNode = await presence_nodes()
    await b.broker.subscribe("room")  # b hears the channel's announcements
    a.broker.presence_join("room", "m1", entry("m1", "alice"))
    # Two nodes' joins race to Redis on their own connections: order them by waiting.
    await b.until(lambda: len(b.events) == 1)
    b.broker.presence_join("room", "m2", entry("m2", "bob"))
    a.broker.presence_join("room", "m1", entry("m1", "alice"))  # already there: not again
    await b.until(lambda: len(b.events) == 2)
    snapshot = await a.broker.presence("room", 10)
    assert (snapshot.count, snapshot.version) == (2, 2)
    assert sorted(snapshot.entries) == sorted([entry("m1", "alice"), entry("m2", "bob")])
    a.broker.presence_leave("room", "m1")
    a.broker.presence_leave("room", "m1")  # left already: not again
    await b.until(lambda: len(b.events) == 3)
    assert b.seen() == [("join", "alice", 1), ("join", "bob", 2), ("leave", "alice", 1)]
    assert [e.version for e in b.events] == [1, 2, 3]
    assert (await b.broker.presence("room", 1)).entries == [entry("m2", "bob")]


async def test_refreshes_are_batched_one_script_call_per_channel_per_interval(
    presence_nodes: Callable[..., Any], redis: Redis
) -> None:
    clock = ManualClock()
    a: PresenceNode = await presence_nodes(presence_ttl=30.0, clock=clock)  # refresh every 10 s
    for i in range(100):
        a.broker.presence_join(f"room{i % 2}", f"m{i}", entry(f"m{i}", f"u{i}"))
    assert (await a.broker.presence("room0", 1000)).count == 50
    # Redis loses one member: only a refresh adds it back, so its count shows when one ran.
    entries, expiries, _version, _topic = a.broker.keys.presence("room0")
    await redis.zrem(expiries, "m0")
    await redis.hdel(entries, "m0")
    before = await evalsha_calls(redis)
    clock.advance(9.9)
    assert (await a.broker.presence("room0", 1000)).count == 49  # no refresh yet
    assert await evalsha_calls(redis) - before == 1  # the read alone
    for interval in range(1, 4):
        calls = await evalsha_calls(redis)
        clock.advance(10.0 if interval > 1 else 0.1)
        await a.broker.presence("room0", 1000)  # its round trip holds the refresh, or follows it
        assert (await a.broker.presence("room0", 1000)).count == 50
        # One script call per channel for a hundred members, and the two reads.
        assert await evalsha_calls(redis) - calls == 2 + 2


async def test_members_lost_with_redis_are_added_back_and_announced_again(
    presence_nodes: Callable[..., Any], redis_server: RedisServer
) -> None:
    a: PresenceNode = await presence_nodes(presence_ttl=0.6)
    b: PresenceNode = await presence_nodes(presence_ttl=0.6)
    await b.broker.subscribe("room")
    a.broker.presence_join("room", "m1", entry("m1", "alice"))
    await b.until(lambda: len(b.events) == 1)
    redis_server.stop()
    redis_server.start()  # every key is gone
    # The next refresh of `a` adds its member back, and announces it (version 1 of the new
    # keys). Whether `b` heard it depends on which reconnected first, so `b` reads.
    async with asyncio.timeout(WAIT):
        while True:
            try:
                snapshot = await b.broker.presence("room", 10)
                if snapshot.count:
                    break
            except Unavailable:
                pass  # b's connection is not back yet
            await asyncio.sleep(0.05)  # polling Redis itself, bounded by the timeout
    assert (snapshot.version, snapshot.entries) == (1, [entry("m1", "alice")])


async def test_close_says_goodbye_for_every_member_of_the_node(
    presence_nodes: Callable[..., Any],
) -> None:
    a: PresenceNode = await presence_nodes()
    b: PresenceNode = await presence_nodes()
    await b.broker.subscribe("room")
    for i in range(3):
        a.broker.presence_join("room", f"m{i}", entry(f"m{i}", f"u{i}"))
    b.broker.presence_join("room", "mine", entry("mine", "stays"))
    await b.until(lambda: len(b.events) == 4)
    await a.broker.close()
    await b.until(lambda: len(b.events) == 7)
    assert [(kind, count) for kind, _user, count in b.seen()[4:]] == [
        ("leave", 3),
        ("leave", 2),
        ("leave", 1),
    ]
