"""Two pushwire processes on three independent redis-servers (`--broker redis+shards://…`):
channels on every shard delivered in order on both nodes, and a shard restart told as a gap on
that shard's channels only."""

from __future__ import annotations

import asyncio
import json

import pytest

from pushwire.broker.redis.sharded import slot_of
from pushwire.client import Client, Gap, Message, connect
from tests.integration.scaleout_helpers import publish_http
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration


def shards_url(servers: list[RedisServer]) -> str:
    return "redis+shards://" + ",".join(f"127.0.0.1:{server.port}" for server in servers)


def shard_of(channel: str, count: int) -> int:
    """The index of the shard holding `channel` (its slot's range)."""
    return slot_of(channel) * count // 16384


def one_channel_per_shard(count: int) -> list[str]:
    found: dict[int, str] = {}
    index = 0
    while len(found) < count:
        found.setdefault(shard_of(f"room{index}", count), f"room{index}")
        index += 1
    return [found[shard] for shard in range(count)]


async def publish_ok(node: ServerProcess, channel: str, body: str) -> dict[str, object]:
    status, answer = await asyncio.to_thread(publish_http, node, channel, body.encode())
    assert status == 200, answer
    result = json.loads(answer)
    assert isinstance(result, dict)
    return result


async def messages(client: Client, count: int) -> list[Message]:
    got = []
    for _ in range(count):
        item = await asyncio.wait_for(client.recv(), 20)
        assert isinstance(item, Message), item
        got.append(item)
    return got


async def test_two_nodes_deliver_channels_on_every_shard_in_order(
    server_factory: ServerFactory, redis_shards: list[RedisServer]
) -> None:
    nodes = [server_factory("--broker", shards_url(redis_shards)) for _ in range(2)]
    channels = one_channel_per_shard(len(redis_shards))
    async with (
        connect(nodes[0].url("/pushwire"), transports=["websocket"]) as first,
        connect(nodes[1].url("/pushwire"), transports=["websocket"]) as second,
    ):
        for client in (first, second):
            for channel in channels:
                await client.subscribe(channel)
        count = 30
        for i in range(count):
            for index, channel in enumerate(channels):
                await publish_ok(nodes[(i + index) % 2], channel, f"{channel} {i}")
        for client in (first, second):
            got = await messages(client, count * len(channels))
            for channel in channels:
                mine = [m for m in got if m.channel == channel]
                assert [m.data for m in mine] == [f"{channel} {i}" for i in range(count)]
                assert [m.offset for m in mine] == list(range(1, count + 1))


async def test_a_shard_restart_is_a_gap_on_its_channels_only(
    server_factory: ServerFactory, redis_shards: list[RedisServer]
) -> None:
    publisher, node = (server_factory("--broker", shards_url(redis_shards)) for _ in range(2))
    doomed_channel, other_channel, _ = one_channel_per_shard(len(redis_shards))
    doomed = redis_shards[shard_of(doomed_channel, len(redis_shards))]
    async with (
        connect(node.url("/pushwire"), transports=["websocket"]) as client,
        connect(node.url("/pushwire"), transports=["websocket"]) as bystander,
    ):
        await client.subscribe(doomed_channel)
        await bystander.subscribe(other_channel)
        await publish_ok(publisher, doomed_channel, "before")
        [first] = await messages(client, 1)

        doomed.stop()
        status, _ = await asyncio.to_thread(publish_http, publisher, doomed_channel, b"during")
        assert status == 503
        await publish_ok(publisher, other_channel, "elsewhere")
        [elsewhere] = await messages(bystander, 1)
        doomed.start()

        deadline = asyncio.get_running_loop().time() + 30
        while (await asyncio.to_thread(publish_http, publisher, doomed_channel, b"after"))[
            0
        ] != 200:
            assert asyncio.get_running_loop().time() < deadline, "publishing never came back"
            await asyncio.sleep(0.1)
        items = [await asyncio.wait_for(client.recv(), 30)]
        while not isinstance(items[-1], Message):
            items.append(await asyncio.wait_for(client.recv(), 30))
        *before, item = items
        assert isinstance(item, Message) and (item.data, item.offset) == ("after", 1), items
        assert len(before) == 1 and isinstance(before[0], Gap), items
        gap = before[0]
        assert (gap.channel, gap.from_epoch, gap.from_offset) == (doomed_channel, first.epoch, 1)
        assert (gap.to_epoch, gap.to_offset) == (item.epoch, 0), gap
        # The other shard's channel kept its epoch, lost nothing and saw no gap.
        await publish_ok(publisher, other_channel, "still")
        [still] = await messages(bystander, 1)
        assert (still.epoch, still.offset) == (elsewhere.epoch, 2)
