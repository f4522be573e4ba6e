"""Two pushwire processes on a real Redis Cluster of three masters (`--broker
redis+cluster://…`): channels and users on every master, delivered in order on both nodes,
resumed by offset across nodes, a master restart told as a gap, direct messages across nodes."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from websockets.asyncio.client import connect as ws_connect

from pushwire.client import Client, Gap, Message, connect
from tests.helpers import PUSHWIRE_V1
from tests.integration.scaleout_helpers import publish_http
from tests.redis_cluster_helpers import RedisCluster
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration


def on_masters(cluster: RedisCluster, count: int, prefix: str, form: str) -> list[str]:
    """`count` names whose `form` (a key or pub/sub name, `{}` for the name) lands on
    different masters."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < count:
        name = f"{prefix}{index}"
        found.setdefault(cluster.master_of(form.format(name)).port, name)
        index += 1
    return list(found.values())


def channels_on_masters(cluster: RedisCluster) -> list[str]:
    return on_masters(cluster, len(cluster.nodes), "room", "pushwire:{{{}}}")


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


async def test_two_nodes_deliver_channels_on_every_master_in_order(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    nodes = [server_factory("--broker", redis_cluster.url) for _ in range(2)]
    channels = channels_on_masters(redis_cluster)
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


async def test_a_subscriber_resumes_by_offset_on_the_other_node(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    first, second = (server_factory("--broker", redis_cluster.url) for _ in range(2))
    for channel in channels_on_masters(redis_cluster):
        async with connect(first.url("/pushwire"), transports=["websocket"]) as client:
            await client.subscribe(channel)
            await publish_ok(first, channel, "before")
            [seen] = await messages(client, 1)
        for i in range(20):
            await publish_ok(second, channel, f"missed {i}")
        since = {"epoch": seen.epoch, "offset": seen.offset}
        async with ws_connect(second.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1) as again:
            await again.send(json.dumps({"type": "hello"}))
            await again.send(
                json.dumps({"type": "subscribe", "id": 1, "channel": channel, "since": since})
            )
            envelopes = [json.loads(await asyncio.wait_for(again.recv(), 10)) for _ in range(22)]
        assert [e["type"] for e in envelopes[:2]] == ["welcome", "subscribed"]
        assert [e["data"] for e in envelopes[2:]] == [f"missed {i}" for i in range(20)]
        assert [e["offset"] for e in envelopes[2:]] == list(range(2, 22))


async def test_a_master_restart_is_told_as_a_gap_and_the_other_masters_go_on(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    publisher, node = (server_factory("--broker", redis_cluster.url) for _ in range(2))
    doomed_channel, other_channel, *_ = channels_on_masters(redis_cluster)
    doomed = redis_cluster.master_of(f"pushwire:{{{doomed_channel}}}")
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
        # The channels of the other masters are published and delivered meanwhile.
        await publish_ok(publisher, other_channel, "elsewhere")
        [elsewhere] = await messages(bystander, 1)
        assert elsewhere.data == "elsewhere"
        doomed.start()

        deadline = asyncio.get_running_loop().time() + 30
        while (await asyncio.to_thread(publish_http, publisher, doomed_channel, b"after"))[
            0
        ] != 200:
            assert asyncio.get_running_loop().time() < deadline, "publishing never came back"
            await asyncio.sleep(0.1)
        # As with one Redis (test_scaleout.py): the node lost its connection to that master,
        # which lost everything (no persistence): a gap from the last message to just before
        # the new epoch's first, then the new epoch's first message.
        items = [await asyncio.wait_for(client.recv(), 30)]
        while not isinstance(items[-1], Message):
            items.append(await asyncio.wait_for(client.recv(), 30))
        *before, item = items
        assert isinstance(item, Message) and (item.data, item.offset) == ("after", 1), items
        assert len(before) == 1 and isinstance(before[0], Gap), items
        gap = before[0]
        assert (gap.channel, gap.from_epoch, gap.from_offset) == (doomed_channel, first.epoch, 1)
        assert (gap.to_epoch, gap.to_offset) == (item.epoch, 0), gap
        # The bystander's channel kept its epoch and lost nothing.
        await publish_ok(publisher, other_channel, "still")
        [still] = await messages(bystander, 1)
        assert (still.epoch, still.offset) == (elsewhere.epoch, 2)


async def test_direct_messages_reach_users_on_every_master_across_nodes(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    a, b = (server_factory("--broker", redis_cluster.url) for _ in range(2))
    users = on_masters(redis_cluster, len(redis_cluster.nodes), "user", "pushwire:user:{{{}}}")
    for user in users:
        async with connect(a.url("/pushwire"), user=user, transports=["websocket"]) as client:
            for i in range(3):
                status, body = await asyncio.to_thread(
                    _post, b, f"/api/send/{user}", f"hi {i}".encode()
                )
                assert status == 200, body
                answer = json.loads(body)
                assert (answer["user"], answer["nodes"], answer["offset"]) == (user, 1, i + 1)
            for i in range(3):
                item = await asyncio.wait_for(client.recv(), 20)
                assert isinstance(item, Message) and item.channel is None, item
                assert (item.data, item.offset) == (f"hi {i}", i + 1)


def _post(node: ServerProcess, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    try:
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_single_redis_given_as_a_cluster_is_a_one_line_error(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    with pytest.raises(RuntimeError) as failed:
        server_factory("--broker", f"redis+cluster://127.0.0.1:{redis_server.port}")
    output = str(failed.value)
    assert f"pushwire serve: redis at 127.0.0.1:{redis_server.port} is not a cluster" in output
    assert "Traceback" not in output


def _publish_keyed(node: ServerProcess, channel: str, body: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    try:
        key = body.replace(" ", "-")
        conn.request("POST", f"/api/publish/{channel}", body=body, headers={"Idempotency-Key": key})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


async def test_a_channel_resharded_while_received_reaches_its_subscriber_without_a_gap(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    quick = ("--set", "broker_cluster_refresh=0.2", "--set", "broker_reconnect_max=0.5")
    publisher, node = (server_factory("--broker", redis_cluster.url, *quick) for _ in range(2))
    channel = channels_on_masters(redis_cluster)[0]
    topic = f"pushwire:{{{channel}}}"
    target = next(n for n in redis_cluster.nodes if n is not redis_cluster.master_of(topic))
    count = 60
    async with connect(node.url("/pushwire"), transports=["websocket"]) as client:
        await client.subscribe(channel)

        async def publish_all() -> None:
            for i in range(count):
                deadline = asyncio.get_running_loop().time() + 30
                # 503 while the slot moves: the same key again is stored once.
                while (await asyncio.to_thread(_publish_keyed, publisher, channel, f"m {i}"))[
                    0
                ] != 200:
                    assert asyncio.get_running_loop().time() < deadline, f"m {i} never stored"
                    await asyncio.sleep(0.05)
                if i == count // 3:
                    await asyncio.to_thread(redis_cluster.migrate, topic, target)

        sender = asyncio.create_task(publish_all())
        try:
            items = [await asyncio.wait_for(client.recv(), 40) for _ in range(count)]
        finally:
            await asyncio.wait_for(sender, 60)
    assert all(isinstance(item, Message) for item in items), items  # no gap
    assert [item.data for item in items] == [f"m {i}" for i in range(count)]  # type: ignore[union-attr]
    assert [item.offset for item in items] == list(range(1, count + 1))  # type: ignore[union-attr]


async def test_a_channel_resharded_without_its_keys_is_told_as_a_gap_with_its_range(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    quick = ("--set", "broker_cluster_refresh=0.2", "--set", "broker_reconnect_max=0.5")
    publisher, node = (server_factory("--broker", redis_cluster.url, *quick) for _ in range(2))
    channel = channels_on_masters(redis_cluster)[0]
    topic = f"pushwire:{{{channel}}}"
    target = next(n for n in redis_cluster.nodes if n is not redis_cluster.master_of(topic))
    async with connect(node.url("/pushwire"), transports=["websocket"]) as client:
        await client.subscribe(channel)
        for i in range(3):
            await publish_ok(publisher, channel, f"before {i}")
        seen = await messages(client, 3)
        # The slot moves, its history does not: the new master starts the channel anew.
        await asyncio.to_thread(redis_cluster.migrate, topic, target, keys=False)
        deadline = asyncio.get_running_loop().time() + 30
        while (await asyncio.to_thread(_publish_keyed, publisher, channel, "after"))[0] != 200:
            assert asyncio.get_running_loop().time() < deadline, "publishing never came back"
            await asyncio.sleep(0.05)
        items = [await asyncio.wait_for(client.recv(), 30)]
        while not isinstance(items[-1], Message):
            items.append(await asyncio.wait_for(client.recv(), 30))
    *before, item = items
    assert isinstance(item, Message) and (item.data, item.offset) == ("after", 1), items
    assert len(before) == 1 and isinstance(before[0], Gap), items
    gap = before[0]
    assert (gap.channel, gap.from_epoch, gap.from_offset) == (channel, seen[-1].epoch, 3)
    assert (gap.to_epoch, gap.to_offset) == (item.epoch, 0), gap
    assert item.epoch != seen[-1].epoch
