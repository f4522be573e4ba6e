"""The shards broker on three real, independent redis-servers: channels and users spread by
hash slot over a fixed list, each whole on its shard, delivered and recovered as with one
Redis; a shard restart touches only its own channels; and the URLs it refuses."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from pushwire.broker.base import DirectSent
from pushwire.broker.redis import RedisNodes, RedisShardsBroker
from pushwire.broker.redis.sharded import ShardedBroker, slot_of
from pushwire.broker.redis.shards import parse_shards_url
from pushwire.errors import ConfigError, PushwireError
from pushwire.message import Data, Message, Position
from tests.redis_cluster_helpers import ShardsBrokers, spread, spread_users
from tests.redis_helpers import WAIT, RedisServer

pytestmark = pytest.mark.integration


async def publish(broker: ShardedBroker, channel: str, data: Data) -> Message:
    future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
    broker.publish(channel, data, future.set_result)
    async with asyncio.timeout(WAIT):
        result = await future
    assert isinstance(result, Message), result
    return result


def test_a_shards_url_names_each_shard_in_order() -> None:
    assert parse_shards_url("rediss+shards://app:secret@h1:7000,[::1]:7001,h3/2?ssl=x") == [
        "rediss://app:secret@h1:7000/2?ssl=x",
        "rediss://app:secret@[::1]:7001/2?ssl=x",
        "rediss://app:secret@h3:6379/2?ssl=x",
    ]
    assert parse_shards_url("redis+shards://h1:1,h2:2") == ["redis://h1:1/0", "redis://h2:2/0"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:1", "a redis shards URL starts with redis+shards://, not 'redis://h:1'"),
        ("redis+shards://h:1/x", "bad database in the redis shards URL: '/x'"),
        ("redis+shards://h:1,:2", "no host in the redis shards address ':2'"),
        ("redis+shards://h:port", "bad port in the redis shards address 'h:port'"),
        ("redis+shards://h:1,h:1", "a redis shard is named twice in 'redis+shards://h:1,h:1'"),
    ],
)
def test_a_malformed_shards_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RedisShardsBroker(url)
    assert str(refused.value) == message


def test_slots_split_into_equal_ranges_in_the_order_of_the_url() -> None:
    # Redis Cluster's slot of a hash tag: the routing is the cluster's, with a fixed map.
    assert slot_of("pushwire:{room}") == slot_of("{room}") == slot_of("room")
    assert [slot * 3 // 16384 for slot in (0, 5461, 5462, 10922, 10923, 16383)] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


async def test_every_channel_on_every_shard_reaches_every_broker_in_offset_order(
    shards_brokers: ShardsBrokers, redis_shards: list[RedisServer]
) -> None:
    first, second = await shards_brokers(), await shards_brokers()
    channels = spread(first.broker, 6)
    assert len({id(first.broker.shard(first.broker.keys.topic(c))) for c in channels}) == 3
    for node in (first, second):
        for channel in channels:
            await node.broker.subscribe(channel)
    count = 40
    for i in range(count):
        for index, channel in enumerate(channels):
            (first, second)[index % 2].broker.publish(channel, f"{channel} {i}")
    for node in (first, second):
        await node.until(lambda node=node: len(node.received) >= count * len(channels))  # type: ignore[misc]
        for channel in channels:
            got = node.of(channel)
            assert [m.data for m in got] == [f"{channel} {i}" for i in range(count)]
            assert [m.offset for m in got] == list(range(1, count + 1))
    # Each channel's keys are on its own shard, and only there.
    for index, server in enumerate(redis_shards):
        client = Redis(port=server.port)
        try:
            keys = {_text(k) for k in await client.keys("pushwire:{*}:meta")}
        finally:
            await client.aclose()
        mine = {c for c in channels if slot_of(c) * 3 // 16384 == index}
        assert keys == {f"pushwire:{{{c}}}:meta" for c in mine}


async def test_users_and_nodes_are_reached_across_shards(shards_brokers: ShardsBrokers) -> None:
    first, second = await shards_brokers(), await shards_brokers()
    users = spread_users(first.broker, 3)
    assert len({id(first.broker.shard(first.broker.keys.inbox(u)[0])) for u in users}) == 3
    for user in users:
        await second.broker.listen_user(user)
    for user in users:
        future: asyncio.Future[DirectSent | PushwireError] = (
            asyncio.get_running_loop().create_future()
        )
        first.broker.send_direct(user, f"hi {user}", future.set_result)
        sent = await asyncio.wait_for(future, WAIT)
        assert isinstance(sent, DirectSent) and sent.receivers == 1, sent
    await second.until(lambda: len(second.direct) == 3)
    assert sorted(m.data for _, m in second.direct) == sorted(f"hi {u}" for u in users)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    one, two = RedisNodes(first.broker, 3.0), RedisNodes(second.broker, 3.0)
    await one.start(lambda payload: None)
    await two.start(received.put_nowait)
    try:
        assert (await one.send(two.node, b"hello")).value == "delivered"
        assert await asyncio.wait_for(received.get(), WAIT) == b"hello"
    finally:
        await one.close()
        await two.close()


async def test_a_restarted_shard_starts_new_epochs_on_its_channels_only(
    shards_brokers: ShardsBrokers, redis_shards: list[RedisServer]
) -> None:
    first, second = await shards_brokers(), await shards_brokers()
    doomed_channel, other_channel = spread(first.broker, 2)
    doomed = redis_shards[slot_of(doomed_channel) * 3 // 16384]
    for channel in (doomed_channel, other_channel):
        await second.broker.subscribe(channel)
    before = await publish(first.broker, doomed_channel, "before")
    other = await publish(first.broker, other_channel, "other before")
    await second.until(lambda: len(second.received) == 2)

    doomed.stop()
    during = await publish(first.broker, other_channel, "other during")
    await second.until(lambda: during in second.received)
    doomed.start()

    await second.until(lambda: any(doomed_channel in c for c in second.resubscribed), 30)
    assert all(other_channel not in c for c in second.resubscribed)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
        first.broker.publish(doomed_channel, "after", future.set_result)
        after = await asyncio.wait_for(future, WAIT)
        if isinstance(after, Message):
            break
        assert asyncio.get_running_loop().time() < deadline, after
        await asyncio.sleep(0.1)
    assert after.epoch != before.epoch and after.offset == 1
    history = await second.broker.history(doomed_channel, before.position)
    assert history.lost(before.position) == Position(after.epoch, 0)
    still = await publish(first.broker, other_channel, "still")
    assert (still.epoch, still.offset) == (other.epoch, 3)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
