"""The cluster broker follows a Redis Cluster that changes under it, on a real cluster: a
slot resharded to another master (keys migrated) and a replica promoted by a failover. The
channels and users of the moved slots are subscribed on their new master, named for recovery
once there, and nothing is lost: their history moved with them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from pushwire.broker.redis import RedisClusterBroker
from pushwire.errors import PushwireError, Unavailable
from pushwire.message import Message, Position
from tests.redis_cluster_helpers import ClusterBrokers, Recorder, RedisCluster, spread
from tests.redis_helpers import WAIT

pytestmark = pytest.mark.integration

#: Bound on a whole resharding or failover as the brokers see it.
FOLLOW = 30.0


async def publish_until_stored(broker: RedisClusterBroker, channel: str, data: str) -> Message:
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


@contextlib.asynccontextmanager
async def publishing(
    broker: RedisClusterBroker, channels: list[str]
) -> AsyncIterator[list[Message]]:
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
    assert publisher.broker.changes >= 1
