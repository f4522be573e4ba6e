"""The cluster broker follows a Redis Cluster that changes under it, on a real cluster: a
slot resharded to another master (keys migrated) and a replica promoted by a failover. The
channels and users of the moved slots are subscribed on their new master, named for recovery
once there, and nothing is lost: their history moved with them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from pushwire.broker.base import DirectSent
from pushwire.broker.redis import RedisClusterBroker
from pushwire.broker.redis.sharded import ShardedBroker
from pushwire.errors import PushwireError, Unavailable
from pushwire.message import Message, Position
from tests.redis_cluster_helpers import ClusterBrokers, ClusterNode, Recorder, RedisCluster, spread
from tests.redis_helpers import WAIT

pytestmark = pytest.mark.integration

#: Bound on a whole resharding or failover as the brokers see it.
FOLLOW = 30.0


async def publish_until_stored(broker: ShardedBroker, channel: str, data: str) -> Message:
    """Publish with an idempotency key, again while the slot moves (`Unavailable`): stored
    once, whatever the retries."""
    deadline = asyncio.get_running_loop().time() + FOLLOW
    while True:
        future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
        broker.publish(channel, data, future.set_result, idempotency_key=data.replace(" ", "-"))
        async with asyncio.timeout(WAIT):
            result = await future
        if isinstance(result, Message):
            return result
        assert isinstance(result, Unavailable), result
        assert asyncio.get_running_loop().time() < deadline, f"never stored: {result}"
        await asyncio.sleep(0.05)


async def send_until_sent(broker: ShardedBroker, user: str, data: str) -> Message:
    """Send a direct message, again while its slot moves (`Unavailable`); its position."""
    deadline = asyncio.get_running_loop().time() + FOLLOW
    while True:
        future: asyncio.Future[DirectSent | PushwireError] = (
            asyncio.get_running_loop().create_future()
        )
        broker.send_direct(user, data, future.set_result)
        async with asyncio.timeout(WAIT):
            result = await future
        if isinstance(result, DirectSent):
            return result.message
        assert isinstance(result, Unavailable), result
        assert asyncio.get_running_loop().time() < deadline, f"never sent: {result}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def publishing(broker: ShardedBroker, channels: list[str]) -> AsyncIterator[list[Message]]:
    """Publish to `channels` in turn, without pause, until the block ends; the messages
    stored, in order."""
    stored: list[Message] = []
    stop = asyncio.Event()

    async def run() -> None:
        i = 0
        while not stop.is_set():
            for channel in channels:
                stored.append(await publish_until_stored(broker, channel, f"{channel} {i}"))
            i += 1

    task = asyncio.create_task(run())
    try:
        yield stored
    finally:
        stop.set()
        async with asyncio.timeout(FOLLOW + WAIT):
            await task


def received_all(node: Recorder, stored: list[Message]) -> bool:
    return all(message in node.received for message in stored)


async def test_a_resharded_slot_is_followed_and_its_channel_loses_nothing(
    cluster_brokers: ClusterBrokers, redis_cluster: RedisCluster
) -> None:
    publisher, subscriber = await cluster_brokers(), await cluster_brokers()
    moving, staying = spread(publisher.broker, 2)
    topic = publisher.broker.keys.topic(moving)
    source = redis_cluster.master_of(topic)
    target = next(node for node in redis_cluster.nodes if node is not source)
    for channel in (moving, staying):
        await subscriber.broker.subscribe(channel)
    async with publishing(publisher.broker, [moving, staying]) as stored:
        await subscriber.until(lambda: len(subscriber.received) >= 10)
        await asyncio.to_thread(redis_cluster.migrate, topic, target)
        # Published on the new master after the move, and received there.
        count = len(stored)
        await subscriber.until(
            lambda: sum(m.channel == moving for m in stored[count:]) >= 5, FOLLOW
        )
    # Nothing lost: what was missed live during the move is in history, which moved along.
    assert any(moving in channels for channels in subscriber.resubscribed)
    await subscriber.until(
        lambda: received_all(subscriber, [m for m in stored if m.channel == staying])
    )
    got = {m.offset: m for m in subscriber.of(moving)}
    ours = [m for m in stored if m.channel == moving]
    first = ours[0].position
    history = await subscriber.broker.history(moving, Position(first.epoch, 0))
    assert history.complete or history.lost(Position(first.epoch, 0)) is None
    known = {**{m.offset: m for m in history.messages}, **got}
    assert [known[m.offset] for m in ours] == ours  # one epoch, offsets dense, all there
    assert {m.epoch for m in ours} == {first.epoch}
    assert [m.offset for m in ours] == list(range(1, len(ours) + 1))
    # The channel and the user now live on the target master, for both brokers.
    for node in (publisher, subscriber):
        assert node.broker.shard(topic).url.endswith(f":{target.port}/0")
    assert isinstance(publisher.broker, RedisClusterBroker)
    assert publisher.broker.changes >= 1


@pytest.fixture
def replica(redis_cluster: RedisCluster, tmp_path: Path) -> ClusterNode:
    """A replica of the cluster's first master, in sync (stopped with the cluster)."""
    folder = tmp_path / "replica"
    folder.mkdir()
    return redis_cluster.add_replica(redis_cluster.nodes[0], folder)


async def test_a_failover_is_followed_and_the_promoted_replica_loses_nothing(
    cluster_brokers: ClusterBrokers, redis_cluster: RedisCluster, replica: ClusterNode
) -> None:
    publisher, subscriber = await cluster_brokers(), await cluster_brokers()
    master = redis_cluster.nodes[0]
    channels = spread(publisher.broker, 3)
    [failing] = [
        c for c in channels if redis_cluster.master_of(publisher.broker.keys.topic(c)) is master
    ]
    user = next(
        u
        for u in (f"user{i}" for i in range(1000))
        if redis_cluster.master_of(publisher.broker.keys.user(u)) is master
    )
    for channel in channels:
        await subscriber.broker.subscribe(channel)
    await subscriber.broker.listen_user(user)
    async with publishing(publisher.broker, channels) as stored:
        await subscriber.until(lambda: len(subscriber.received) >= 10)
        await asyncio.to_thread(redis_cluster.fail_over, replica)
        count = len(stored)
        await subscriber.until(
            lambda: (
                sum(m.channel == failing for m in subscriber.received if m in stored[count:]) >= 5
            ),
            FOLLOW,
        )
    assert any(failing in changed for changed in subscriber.resubscribed)
    ours = [m for m in stored if m.channel == failing]
    first = ours[0].position
    history = await subscriber.broker.history(failing, Position(first.epoch, 0))
    known = {
        **{m.offset: m for m in history.messages},
        **{m.offset: m for m in subscriber.of(failing)},
    }
    assert [known.get(m.offset) for m in ours] == ours  # the same epoch, nothing lost
    assert {m.epoch for m in ours} == {first.epoch}
    # The old master is a replica now: its shard is gone, the promoted replica serves.
    for node in (publisher, subscriber):
        ports = sorted(
            int(shard.url.rsplit(":", 1)[1].split("/")[0]) for shard in node.broker.shards
        )
        assert ports == sorted(n.port for n in (replica, *redis_cluster.nodes[1:]))
    # The user moved along: a direct message reaches the subscriber through the new master.
    sent = await publisher.broker.direct.inbox_position(user)
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    publisher.broker.send_direct(user, "after", future.set_result)
    await asyncio.wait_for(future, WAIT)
    await subscriber.until(lambda: any(m.data == "after" for _, m in subscriber.direct))
    assert sent.offset == 0


def test_a_refresh_interval_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^refresh_interval must be > 0, not 0$"):
        RedisClusterBroker("redis+cluster://h:1", refresh_interval=0)


async def test_a_lost_master_has_the_map_read_again_at_most_once_per_interval(
    redis_cluster: RedisCluster,
) -> None:
    interval = 0.3
    broker = RedisClusterBroker(redis_cluster.url, refresh_interval=interval)
    await broker.start()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        redis_cluster.nodes[0].stop()
        # Read again at once when the connection is lost, then every interval while down.
        async with asyncio.timeout(FOLLOW):
            while broker.reads < 3:
                await asyncio.sleep(0.05)
        elapsed = loop.time() - began
        assert broker.reads <= elapsed / interval + 1
        assert broker.changes == 0  # no replica: the same map, the master awaited in place
        redis_cluster.nodes[0].start()
    finally:
        async with asyncio.timeout(WAIT):
            await broker.close()


async def test_a_killed_master_is_followed_to_its_promoted_replica(
    cluster_brokers: ClusterBrokers, redis_cluster: RedisCluster, replica: ClusterNode
) -> None:
    publisher, subscriber = await cluster_brokers(), await cluster_brokers()
    master = redis_cluster.nodes[0]
    channel = next(
        c
        for c in spread(publisher.broker, 3)
        if redis_cluster.master_of(publisher.broker.keys.topic(c)) is master
    )
    await subscriber.broker.subscribe(channel)
    before = [
        await publish_until_stored(publisher.broker, channel, f"before {i}") for i in range(5)
    ]
    await subscriber.until(lambda: received_all(subscriber, before))
    # The replica has every write before the kill (WAIT), but no node can know that: the
    # promoted replica starts the channel anew (a new epoch), as any lost master's.
    client = Redis(port=master.port)
    try:
        assert await client.execute_command("WAIT", 1, 10_000) == 1  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    master.stop()
    # The cluster promotes the replica after its node timeout; the brokers read the map
    # every interval meanwhile, and follow.
    after = await publish_until_stored(publisher.broker, channel, "after")
    assert after.epoch != before[0].epoch and after.offset == 1
    # Live once the subscriber's subscription moved there; before that, from history.
    await subscriber.until(lambda: any(channel in c for c in subscriber.resubscribed), FOLLOW)
    again = await publish_until_stored(publisher.broker, channel, "again")
    await subscriber.until(lambda: again in subscriber.received)
    history = await subscriber.broker.history(channel, before[-1].position)
    assert history.messages == [after, again]
    for node in (publisher, subscriber):
        ports = {int(shard.url.rsplit(":", 1)[1].split("/")[0]) for shard in node.broker.shards}
        assert replica.port in ports and master.port not in ports


async def test_a_master_killed_before_its_replica_had_its_last_writes_is_a_new_epoch(
    cluster_brokers: ClusterBrokers, redis_cluster: RedisCluster, replica: ClusterNode
) -> None:
    """Replication is asynchronous: the replica is cut off (stopped, its link closed by the
    master) while messages are published, then the master is killed and the replica
    promoted without them. Their offsets are not handed out again: the next messages start
    a new epoch, and the lost ones are inside the gap a subscriber gets, whatever its
    position."""
    publisher, subscriber = await cluster_brokers(), await cluster_brokers()
    master = redis_cluster.nodes[0]
    channel = next(
        c
        for c in spread(publisher.broker, 3)
        if redis_cluster.master_of(publisher.broker.keys.topic(c)) is master
    )
    user = next(
        u
        for u in (f"user{i}" for i in range(1000))
        if redis_cluster.master_of(publisher.broker.keys.user(u)) is master
    )
    await subscriber.broker.subscribe(channel)
    before = [
        await publish_until_stored(publisher.broker, channel, f"before {i}") for i in range(5)
    ]
    await subscriber.until(lambda: received_all(subscriber, before))
    old = before[0].epoch
    assert master.process is not None and replica.process is not None
    client = Redis(port=master.port)
    try:
        assert await client.execute_command("WAIT", 1, 10_000) == 1  # type: ignore[no-untyped-call]
        replica.process.send_signal(signal.SIGSTOP)  # it cannot connect again meanwhile
        try:
            await client.execute_command("CLIENT", "KILL", "TYPE", "replica")  # type: ignore[no-untyped-call]
            info = await client.info("replication")
            assert info["connected_slaves"] == 0
            lost = [
                await publish_until_stored(publisher.broker, channel, f"lost {i}") for i in range(3)
            ]
            await subscriber.until(lambda: received_all(subscriber, lost))
            lost_direct = await send_until_sent(publisher.broker, user, "lost")
            master.process.kill()  # kill -9: the replica never gets them
            master.stop()
        finally:
            replica.process.send_signal(signal.SIGCONT)
    finally:
        await client.aclose()
    after = [await publish_until_stored(publisher.broker, channel, f"after {i}") for i in range(3)]
    # Each broker reads the map on its own: the subscriber's subscription may reach the new
    # master after all three were stored there (they are then history, not live). Once it
    # is there, the next message is live.
    await subscriber.until(lambda: any(channel in c for c in subscriber.resubscribed), FOLLOW)
    again = await publish_until_stored(publisher.broker, channel, "again")
    await subscriber.until(lambda: again in subscriber.received)
    # The user's inbox, on the same master, starts anew too.
    after_direct = await send_until_sent(publisher.broker, user, "after")
    assert lost_direct.offset == 1 and after_direct.epoch != lost_direct.epoch
    assert after_direct.offset == 1
    # No position names two messages: the promoted replica started a new epoch.
    assert [m.offset for m in before + lost] == list(range(1, 9))
    assert {m.epoch for m in before + lost} == {old}
    assert {m.position for m in after}.isdisjoint(m.position for m in before + lost)
    assert [(m.epoch, m.offset) for m in after] == [(after[0].epoch, i) for i in (1, 2, 3)]
    assert after[0].epoch != old
    # The subscriber got each message once, in order; what was published on the new master
    # before its subscription there was confirmed is recovered from history (below: the
    # channel was named for recovery once there).
    live = subscriber.of(channel)
    assert live == before + lost + [m for m in after if m in live] + [again]
    # Recovery from any position of the old epoch is a gap with its exact range: the rest
    # of the old epoch (the lost messages, for who missed them) up to the new epoch's first
    # message; then the new epoch, whole.
    for since in (before[-1].position, lost[-1].position):
        history = await subscriber.broker.history(channel, since)
        assert history.messages == [*after, again]
        assert history.lost(since) == Position(after[0].epoch, 0)
    replica_ports = {int(s.url.rsplit(":", 1)[1].split("/")[0]) for s in publisher.broker.shards}
    assert replica.port in replica_ports and master.port not in replica_ports
