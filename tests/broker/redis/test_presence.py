"""Presence in Redis with two brokers playing two nodes: shared members, batched refreshes,
and members that come back after Redis lost them; at scale, joins coalesced into one pub/sub
message per batch, and the sweep of expired members and a node's goodbye done in bounded
script calls, so that no script's work grows with the number of members (`presence_batch`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from pushwire.broker.redis import RedisBroker, RedisNodes
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


# -- at scale: batches of `presence_batch` ----------------------------------------------

BATCH = 500
MANY = 20_000


class Topic:
    """The presence messages on a channel's pub/sub name, as Redis carried them: how many
    changes each one held."""

    def __init__(self, redis: Redis, name: str) -> None:
        self.pubsub = redis.pubsub()
        self.name = name
        self.sizes: list[int] = []
        self.changed = asyncio.Event()

    async def read(self) -> None:
        await self.pubsub.subscribe(self.name)
        async for message in self.pubsub.listen():
            if message["type"] == "message" and message["data"][:1] == b"!":
                self.sizes.append(message["data"].count(b"\n") + 1)
                self.changed.set()

    async def carried(self, changes: int) -> None:
        """Until the messages read so far carried `changes` changes."""
        async with asyncio.timeout(4 * WAIT):
            while sum(self.sizes) < changes:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def topic(redis: Redis, presence_nodes: Callable[..., Any]) -> AsyncIterator[Topic]:
    """Listening to the pub/sub name of the channel "room"."""
    node: PresenceNode = await presence_nodes()
    listener = Topic(redis, node.broker.keys.topic("room"))
    task = asyncio.create_task(listener.read())
    async with asyncio.timeout(WAIT):
        while not (await redis.pubsub_numsub(listener.name))[0][1]:
            await asyncio.sleep(0.01)  # polling Redis for the subscription, bounded
    yield listener
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await listener.pubsub.aclose()


async def test_joins_of_one_turn_travel_in_one_message_per_batch_each_reported_in_order(
    presence_nodes: Callable[..., Any], topic: Topic
) -> None:
    a: PresenceNode = await presence_nodes(presence_batch=BATCH)
    b: PresenceNode = await presence_nodes()
    await b.broker.subscribe("room")
    for i in range(1000):
        a.broker.presence_join("room", f"m{i}", entry(f"m{i}", f"u{i}"))
    a.broker.presence_leave("room", "m0")
    await b.until(lambda: len(b.events) == 1001)
    await topic.carried(1001)
    assert topic.sizes == [BATCH, BATCH, 1]  # not one message per join
    assert [e.version for e in b.events] == list(range(1, 1002))
    assert b.seen()[:2] == [("join", "u0", 1), ("join", "u1", 2)]
    assert b.seen()[-2:] == [("join", "u999", 1000), ("leave", "u0", 999)]


async def test_a_goodbye_of_many_members_runs_in_batches_and_reports_every_leave(
    presence_nodes: Callable[..., Any], topic: Topic, redis: Redis
) -> None:
    a: PresenceNode = await presence_nodes(presence_batch=BATCH, timeout=WAIT)
    b: PresenceNode = await presence_nodes()
    await b.broker.subscribe("room")
    for i in range(MANY):
        a.broker.presence_join("room", f"m{i}", entry(f"m{i}", f"u{i}"))
    await b.until(lambda: len(b.events) == MANY, timeout=4 * WAIT)
    calls = await evalsha_calls(redis)
    await a.broker.close()
    await b.until(lambda: len(b.events) == 2 * MANY, timeout=4 * WAIT)
    await topic.carried(2 * MANY)
    assert {e.kind for e in b.events[MANY:]} == {"leave"}
    assert [e.count for e in b.events[MANY:]] == list(range(MANY - 1, -1, -1))
    assert max(topic.sizes) == BATCH
    assert await evalsha_calls(redis) - calls >= MANY // BATCH
    entries, expiries, _version, _topic = a.broker.keys.presence("room")
    assert (await redis.zcard(expiries), await redis.hlen(entries)) == (0, 0)


async def test_many_expired_members_are_swept_in_batches_each_leave_reported(
    presence_nodes: Callable[..., Any], topic: Topic, redis: Redis
) -> None:
    # `a` never refreshes (its clock stands still) and never says goodbye: a dead node.
    a: PresenceNode = await presence_nodes(presence_ttl=1.0, clock=ManualClock())
    b: PresenceNode = await presence_nodes(presence_batch=BATCH)
    await b.broker.subscribe("room")
    for i in range(MANY):
        a.broker.presence_join("room", f"m{i}", entry(f"m{i}", f"u{i}"))
    await b.until(lambda: len(b.events) >= MANY, timeout=4 * WAIT)
    calls = await evalsha_calls(redis)
    async with asyncio.timeout(4 * WAIT):
        while (await b.broker.presence("room", 1)).count:  # a read sweeps, then more sweeps
            await asyncio.sleep(0.1)  # polling for Redis's clock to pass the expiry, bounded
    await b.until(lambda: len(b.events) == 2 * MANY, timeout=4 * WAIT)
    await topic.carried(2 * MANY)
    leaves = [e for e in b.events if e.kind == "leave"]
    assert len(leaves) == MANY
    assert sorted(e.version for e in b.events) == list(range(1, 2 * MANY + 1))
    # Each script call swept at most a batch, and announced them in one message.
    assert max(topic.sizes[-(MANY // BATCH) :]) <= BATCH
    assert await evalsha_calls(redis) - calls >= MANY // BATCH
    entries, expiries, _version, _topic = a.broker.keys.presence("room")
    assert (await redis.zcard(expiries), await redis.hlen(entries)) == (0, 0)


async def test_a_shutdown_redis_refuses_as_busy_is_one_line_in_the_log_per_failure(
    presence_nodes: Callable[..., Any],
    redis_server: RedisServer,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    a: PresenceNode = await presence_nodes(timeout=2.0)
    nodes = RedisNodes(a.broker, 0.3)  # its keep-alive refreshes every 0.1 s
    await nodes.start(lambda payload: None)
    for i in range(10):
        a.broker.presence_join("room", f"m{i}", entry(f"m{i}", f"u{i}"))
    assert (await a.broker.presence("room", 1)).count == 10
    await redis.config_set("lua-time-limit", 100)  # BUSY to all after 0.1 s of a script
    busy = Redis.from_url(redis_server.url)
    spin = asyncio.ensure_future(busy.eval("while true do end", 0))
    killer = Redis.from_url(redis_server.url)
    try:
        async with asyncio.timeout(WAIT):
            # The keep-alive meets BUSY, and keeps going.
            while "liveness key not refreshed" not in caplog.text:
                await asyncio.sleep(0.05)  # polling the log, bounded by the timeout
        await nodes.close()
        await a.broker.close()  # its goodbye meets BUSY
    finally:
        await killer.script_kill()
        await asyncio.gather(spin, return_exceptions=True)
        await busy.aclose()
        await killer.aclose()
        await redis.config_set("lua-time-limit", 5000)
    assert "could not delete the liveness key" in caplog.text
    assert "presence" in caplog.text
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
