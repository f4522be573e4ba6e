"""The cluster broker on a real Redis Cluster of three masters: channels and users spread by
hash slot, each with everything of it on its own master, delivered and recovered as with one
Redis; and the URLs and servers it refuses."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from pushwire.broker.base import DirectSent
from pushwire.broker.redis import RedisClusterBroker, RedisNodes
from pushwire.broker.redis.sharded import ShardedBroker
from pushwire.broker.redis.topology import Seed, parse_url
from pushwire.errors import ConfigError, PushwireError
from pushwire.message import Data, Message, Position
from tests.redis_cluster_helpers import ClusterBrokers, RedisCluster, spread, spread_users
from tests.redis_helpers import WAIT, RedisServer

pytestmark = pytest.mark.integration


async def publish(broker: ShardedBroker, channel: str, data: Data) -> Message:
    future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
    broker.publish(channel, data, future.set_result)
    async with asyncio.timeout(WAIT):
        result = await future
    assert isinstance(result, Message), result
    return result


async def send(broker: ShardedBroker, user: str, data: Data) -> DirectSent:
    future: asyncio.Future[DirectSent | PushwireError] = asyncio.get_running_loop().create_future()
    broker.send_direct(user, data, future.set_result)
    async with asyncio.timeout(WAIT):
        result = await future
    assert isinstance(result, DirectSent), result
    return result


# -- URLs ------------------------------------------------------------------------------------


def test_a_cluster_url_names_its_seeds_scheme_and_credentials() -> None:
    seed = parse_url(
        "rediss+cluster://app:secret@10.0.0.1:7000,[::1]:7001,cache?ssl_cert_reqs=none"
    )
    assert seed == Seed(
        "rediss",
        "app:secret@",
        "ssl_cert_reqs=none",
        (("10.0.0.1", 7000), ("::1", 7001), ("cache", 6379)),
    )
    assert seed.url("::1", 7001) == "rediss://app:secret@[::1]:7001/0?ssl_cert_reqs=none"
    assert parse_url("redis+cluster://h:1/0").url("h", 1) == "redis://h:1/0"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:1", "a redis cluster URL starts with redis+cluster://, not 'redis://h:1'"),
        ("redis+cluster://h:1/2", "a redis cluster has database 0 only, not '/2'"),
        ("redis+cluster://h:1,:2", "no host in the redis cluster address ':2'"),
        ("redis+cluster://h:port", "bad port in the redis cluster address 'h:port'"),
        ("redis+cluster://h:70000", "bad port in the redis cluster address 'h:70000'"),
    ],
)
def test_a_malformed_cluster_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RedisClusterBroker(url)
    assert str(refused.value) == message


def test_a_cluster_broker_not_started_is_down_and_not_continuous() -> None:
    broker = RedisClusterBroker("redis+cluster://127.0.0.1:1")
    assert broker.health_stats() == {
        "up": 0.0,
        "reconnects": 0.0,
        "round_trips": 0.0,
        "round_trip_seconds": 0.0,
        "pending": 0.0,
    }
    assert broker.continuity is None


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        RedisClusterBroker("redis+cluster://h:1", prefix="app{1}:")
    assert str(refused.value) == "a redis cluster prefix has no braces, not 'app{1}:'"


async def test_a_single_redis_is_refused_as_not_a_cluster(redis_server: RedisServer) -> None:
    broker = RedisClusterBroker(f"redis+cluster://127.0.0.1:{redis_server.port}")
    with pytest.raises(ConfigError) as refused:
        await broker.start()
    assert str(refused.value).startswith(
        f"redis at 127.0.0.1:{redis_server.port} is not a cluster ("
    )
    assert "redis+cluster://… for a Redis Cluster" in str(refused.value)


# -- delivery --------------------------------------------------------------------------------


async def test_every_channel_on_every_master_reaches_every_broker_in_offset_order(
    cluster_brokers: ClusterBrokers,
) -> None:
    first, second = await cluster_brokers(), await cluster_brokers()
    channels = spread(first.broker, 6)
    masters = {id(first.broker.shard(first.broker.keys.topic(c))) for c in channels}
    assert len(masters) == 3
    for node in (first, second):
        for channel in channels:
            await node.broker.subscribe(channel)
    count = 50
    for i in range(count):
        for index, channel in enumerate(channels):
            publisher = (first, second)[index % 2].broker
            publisher.publish(channel, f"{channel} {i}")
    for node in (first, second):
        await node.until(lambda node=node: len(node.received) >= count * len(channels))  # type: ignore[misc]
        assert len(node.received) == count * len(channels)
        for channel in channels:
            got = node.of(channel)
            assert [m.data for m in got] == [f"{channel} {i}" for i in range(count)]
            assert [m.offset for m in got] == list(range(1, count + 1))
            assert len({m.epoch for m in got}) == 1
    for channel in channels:  # the same positions everywhere
        assert first.of(channel) == second.of(channel)
    # Health is every master's: up while all are, the counters summed.
    stats = first.broker.health_stats()
    assert stats["up"] == 1.0 and stats["pending"] == 0
    assert stats["round_trips"] == sum(s.health_stats()["round_trips"] for s in first.broker.shards)
    assert stats["round_trips"] >= 3  # one batch at least per master


async def test_history_and_positions_are_the_same_from_every_broker(
    cluster_brokers: ClusterBrokers,
) -> None:
    first, second = await cluster_brokers(), await cluster_brokers()
    for channel in spread(first.broker, 3):
        sent = [await publish(first.broker, channel, f"m{i}") for i in range(5)]
        assert await second.broker.position(channel) == Position(sent[0].epoch, 5)
        history = await second.broker.history(channel, Position(sent[0].epoch, 2))
        assert history.complete
        assert history.messages == sent[2:]
        # An idempotent retry on the other broker answers the first publish's position.
        again = first.broker.publish
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        again(channel, "once", future.set_result, idempotency_key="k1")
        stored = await future
        future = asyncio.get_running_loop().create_future()
        second.broker.publish(channel, "once", future.set_result, idempotency_key="k1")
        assert await future == stored
        assert await first.broker.position(channel) == Position(sent[0].epoch, 6)


async def test_every_key_of_a_channel_and_a_user_is_on_its_own_master(
    cluster_brokers: ClusterBrokers, redis_cluster: RedisCluster
) -> None:
    node = await cluster_brokers()
    broker = node.broker
    channels = spread(broker, 3)
    users = spread_users(broker, 3)
    for channel in channels:
        await publish(broker, channel, "x")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        broker.publish(channel, "y", future.set_result, idempotency_key="key")
        await future
        broker.presence_join(channel, "member", b'{"user":"ann"}')
        await broker.presence(channel, 10)
    for user in users:
        await send(broker, user, "hi")
    for master in redis_cluster.nodes:
        client = Redis(port=master.port)
        try:
            keys = [
                k.decode() if isinstance(k, bytes) else k for k in await client.keys("pushwire:*")
            ]
        finally:
            await client.aclose()
        for key in keys:
            tag = key.split("{", 1)[1].split("}", 1)[0]
            owner = next(c for c in (*channels, *users) if c == tag)
            expected = broker.keys.topic(owner) if owner in channels else broker.keys.user(owner)
            assert redis_cluster.master_of(expected).port == master.port, key
            assert key_slot(key.encode()) == key_slot(expected.encode())
        mine = {key.split("{", 1)[1].split("}", 1)[0] for key in keys}
        for channel in channels:
            here = redis_cluster.master_of(broker.keys.topic(channel)).port == master.port
            assert (channel in mine) == here
            if here:  # meta, history, idempotency key, presence: all of it here
                base = broker.keys.topic(channel)
                for suffix in (":meta", ":history", ":idem:key", ":pm", ":pz", ":pv"):
                    assert base + suffix in keys


async def test_direct_messages_reach_the_listening_brokers_through_the_users_master(
    cluster_brokers: ClusterBrokers,
) -> None:
    first, second = await cluster_brokers(), await cluster_brokers()
    users = spread_users(first.broker, 3)
    for user in users:
        await second.broker.listen_user(user)
    for user in users:
        for i in range(3):
            sent = await send(first.broker, user, f"{user} {i}")
            assert (sent.message.offset, sent.receivers) == (i + 1, 1)
    await second.until(lambda: len(second.direct) >= 9)
    for user in users:
        got = [m for u, m in second.direct if u == user]
        assert [(m.offset, m.data) for m in got] == [(i + 1, f"{user} {i}") for i in range(3)]
        history = await first.broker.inbox_history(user, Position(got[0].epoch, 1))
        assert history.messages == got[1:]
    assert first.direct == []  # not listened there


async def test_nodes_reach_one_another_through_the_cluster(
    cluster_brokers: ClusterBrokers,
) -> None:
    first, second = await cluster_brokers(), await cluster_brokers()
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


# -- a master restart ------------------------------------------------------------------------


async def test_a_restarted_master_starts_a_new_epoch_and_its_channels_are_recovered(
    cluster_brokers: ClusterBrokers, redis_cluster: RedisCluster
) -> None:
    first, second = await cluster_brokers(), await cluster_brokers()
    doomed_channel, other_channel = spread(first.broker, 2)
    doomed = redis_cluster.master_of(first.broker.keys.topic(doomed_channel))
    await second.broker.subscribe(doomed_channel)
    await second.broker.subscribe(other_channel)
    before = await publish(first.broker, doomed_channel, "before")
    await publish(first.broker, other_channel, "other before")
    await second.until(lambda: len(second.received) == 2)
    continuity = second.broker.continuity
    assert continuity is not None

    doomed.stop()
    # The other masters go on: their channels are published and delivered meanwhile.
    during = await publish(first.broker, other_channel, "other during")
    await second.until(lambda: during in second.received)
    doomed.start()

    # Once the doomed master's shard subscribed again, the channel is named for recovery.
    await second.until(lambda: any(doomed_channel in c for c in second.resubscribed), 30)
    assert all(other_channel not in c for c in second.resubscribed)
    assert second.broker.continuity not in (None, continuity)
    # Told only once the master serves again: the recovery's history read is answered.
    history = await second.broker.history(doomed_channel, before.position)
    assert not history.complete and history.position.epoch != before.epoch
    # Redis lost the channel (no persistence): a new epoch, and history says so.
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
        first.broker.publish(doomed_channel, "after", future.set_result)
        after = await asyncio.wait_for(future, WAIT)
        if isinstance(after, Message):
            break
        assert asyncio.get_running_loop().time() < deadline, after  # CLUSTERDOWN meanwhile
        await asyncio.sleep(0.1)
    assert after.epoch != before.epoch and after.offset == 1
    history = await second.broker.history(doomed_channel, before.position)
    assert not history.complete
    assert history.lost(before.position) == Position(after.epoch, 0)
    await second.until(lambda: after in second.received)
