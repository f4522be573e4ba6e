"""Nothing lost silently (issue 14): a re-subscription refused while Redis is down is retried
until messages flow again, or given up where the app sees it (problem 1); a publish whose
answer was lost after Redis stored it is retried with its idempotency key and published once
(problem 5); a Redis restart is a gap from the last message a subscriber had, as a node
cannot know what another Redis lifetime it never saw held (item 6).

Real parts only: a `pushwire serve` process, a real `redis-server` (stopped and started
again), the Python client, `pushwire publish`, and a loopback TCP proxy that drops
connections (cut_proxy.py)."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pushwire.client import Client, Gap, Message, connect
from pushwire.client.errors import Failure
from pushwire.client.retry import RetryPolicy
from tests.chaos.proxy import FaultProxy
from tests.integration.cut_proxy import CutProxy
from tests.integration.scaleout_helpers import publish_http
from tests.redis_helpers import RedisServer, running_redis
from tests.servers import ServerFactory, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT = 20.0
#: Quick retries: Redis comes back within a second or two in these tests.
QUICK = RetryPolicy(attempts=60, delay=0.1, delay_max=0.5)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path, persistent=True) as server:
        yield server


async def proxy_to(host: str, port: int) -> CutProxy:
    proxy = CutProxy(host, port)
    await proxy.start()
    return proxy


@pytest.fixture
async def proxies() -> AsyncIterator[list[CutProxy]]:
    made: list[CutProxy] = []
    yield made
    for proxy in made:
        await proxy.stop()


async def publish_until_accepted(node: ServerProcess, channel: str, text: str) -> int:
    """POST until the node takes it (503 while its broker is down); the offset."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        status, body = await asyncio.to_thread(publish_http, node, channel, text.encode())
        if status == 200:
            offset: int = json.loads(body)["offset"]
            return offset
        assert status == 503, (status, body)
        assert loop.time() < deadline, "the node never took a publish again"
        await asyncio.sleep(0.05)


async def next_item(client: Client) -> Message | Gap | Failure:
    return await asyncio.wait_for(client.recv(), WAIT)


async def next_text(client: Client) -> str:
    item = await next_item(client)
    assert isinstance(item, Message), f"expected a message, got {item}"
    assert isinstance(item.data, str)
    return item.data


# -- problem 1: a re-subscription answered `unavailable` ----------------------------------------


async def test_a_resubscription_refused_while_redis_is_down_is_retried_until_messages_flow(
    server_factory: ServerFactory, persistent_redis: RedisServer, proxies: list[CutProxy]
) -> None:
    """Redis stops, the client's connection drops and resumes at once: its re-subscription is
    answered `unavailable`. Retried, it succeeds once Redis is back, and what is published
    then arrives (same epoch: no gap, nothing lost).

    The node waits at least 1 s before it subscribes to Redis again, so the re-subscription
    (whose history read needs no subscription) is answered before the node receives the
    channel again: what is published meanwhile reaches the client only through the node's
    recovery, from the position read for that re-subscription."""
    slow_back = ("--set", "broker_reconnect_min=2", "--set", "broker_reconnect_max=4")
    node = server_factory("--broker", persistent_redis.url, *slow_back)
    proxy = await proxy_to(node.host, node.port)
    proxies.append(proxy)
    failures: list[Failure] = []
    url = f"http://127.0.0.1:{proxy.port}/pushwire"
    async with connect(url, transports=["websocket"], retry=QUICK, on_error=failures.append) as c:
        await c.subscribe("news")
        await publish_until_accepted(node, "news", "before")
        assert await next_text(c) == "before"

        persistent_redis.stop()
        reconnected = asyncio.ensure_future(c.wait_reconnected(WAIT))
        assert proxy.cut() == 1
        await reconnected  # resumed while Redis is down: the re-subscription is refused
        await asyncio.sleep(0.5)  # a few refused attempts (not needed to pass)
        persistent_redis.start()

        await publish_until_accepted(node, "news", "after")
        assert await next_text(c) == "after"
    assert failures == []


async def test_a_resubscription_given_up_reaches_the_message_stream_and_on_error(
    server_factory: ServerFactory, redis_server: RedisServer, proxies: list[CutProxy]
) -> None:
    """Redis stays down: after its attempts the client gives up the channel, and says so in
    `async for` (a `Failure`) and to `on_error`: never silence."""
    node = server_factory("--broker", redis_server.url)
    proxy = await proxy_to(node.host, node.port)
    proxies.append(proxy)
    failures: list[Failure] = []
    few = RetryPolicy(attempts=3, delay=0.05, delay_max=0.1)
    url = f"http://127.0.0.1:{proxy.port}/pushwire"
    async with connect(url, transports=["websocket"], retry=few, on_error=failures.append) as c:
        await c.subscribe("news")
        redis_server.stop()
        proxy.cut()
        item = await next_item(c)
        assert isinstance(item, Failure), item
        assert (item.operation, item.channel, item.code, item.attempts) == (
            "subscribe",
            "news",
            "unavailable",
            3,
        )
        assert failures == [item]


# -- problem 5: a publish answered 503 that was in fact published -------------------------------


async def redis_behind_proxy(
    server_factory: ServerFactory, redis: RedisServer, proxies: list[CutProxy]
) -> tuple[ServerProcess, CutProxy]:
    proxy = await proxy_to("127.0.0.1", redis.port)
    proxies.append(proxy)
    quick_back = ("--set", "broker_reconnect_min=0.05", "--set", "broker_reconnect_max=0.2")
    # Started from a thread: the proxy runs on this event loop, and the node's start talks
    # to Redis through it.
    broker = f"redis://127.0.0.1:{proxy.port}/0"
    node = await asyncio.to_thread(server_factory, "--broker", broker, *quick_back)
    return node, proxy


async def test_pushwire_publish_retries_a_lost_answer_and_publishes_once(
    server_factory: ServerFactory, redis_server: RedisServer, proxies: list[CutProxy]
) -> None:
    """The connection from the node to Redis dies after Redis ran the publish script: the
    message is stored and fanned out, the publisher gets 503. `pushwire publish` retries
    with the same Idempotency-Key: the answer is the first offset, and the subscriber gets
    the message once."""
    node, redis_proxy = await redis_behind_proxy(server_factory, redis_server, proxies)
    async with connect(node.url("/pushwire"), transports=["websocket"]) as subscriber:
        await subscriber.subscribe("orders")
        redis_proxy.lose_answer_to(b"order-42")
        command = [sys.executable, "-m", "pushwire", "publish", node.url(), "orders", "order-42"]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        assert redis_proxy.lost == 1
        assert done.returncode == 0, done.stderr
        assert "503" in done.stderr  # the first answer, then the retry
        assert json.loads(done.stdout)["offset"] == 1

        assert await next_text(subscriber) == "order-42"
        await publish_until_accepted(node, "orders", "next")
        assert await next_text(subscriber) == "next"  # no second order-42 in between


async def test_the_python_client_retries_a_lost_publish_answer_and_publishes_once(
    server_factory: ServerFactory, redis_server: RedisServer, proxies: list[CutProxy]
) -> None:
    node, redis_proxy = await redis_behind_proxy(server_factory, redis_server, proxies)
    url = node.url("/pushwire")
    async with (
        connect(url, transports=["websocket"]) as subscriber,
        connect(url, transports=["websocket"], retry=QUICK) as publisher,
    ):
        await subscriber.subscribe("orders")
        redis_proxy.lose_answer_to(b"order-43")
        epoch, offset = await publisher.publish("orders", "order-43")
        assert redis_proxy.lost == 1
        assert offset == 1
        assert await next_text(subscriber) == "order-43"
        assert await publisher.publish("orders", "next") == (epoch, 2)
        assert await next_text(subscriber) == "next"


def post(node: ServerProcess, channel: str, body: bytes, key: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    conn.request("POST", f"/api/publish/{channel}", body=body, headers={"Idempotency-Key": key})
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_a_publish_repeated_with_its_idempotency_key_answers_the_first_offset(
    broker: str, server_factory: ServerFactory, tmp_path: Path
) -> None:
    with running_redis(tmp_path) as redis:
        nodes = (
            [server_factory()]
            if broker == "memory"
            else [
                server_factory("--broker", redis.url),
                server_factory("--broker", redis.url),
            ]
        )
        async with connect(nodes[-1].url("/pushwire"), transports=["websocket"]) as subscriber:
            await subscriber.subscribe("pay")
            first = post(nodes[0], "pay", b"once", "k-1")
            again = post(nodes[-1], "pay", b"once", "k-1")  # another node, with Redis
            other = post(nodes[0], "pay", b"twice", "k-2")
            assert first[0] == again[0] == other[0] == 200
            assert json.loads(again[1]) == json.loads(first[1])
            assert json.loads(other[1])["offset"] == json.loads(first[1])["offset"] + 1
            assert await next_text(subscriber) == "once"
            assert await next_text(subscriber) == "twice"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "idempotency key must be 1 to 100 characters, not 0"),
        ("k" * 101, "idempotency key must be 1 to 100 characters, not 101"),
        ("a b", "idempotency key may hold only A-Z a-z 0-9 _ . : -"),
    ],
)
def test_an_invalid_idempotency_key_is_refused_with_400(
    server: ServerProcess, key: str, message: str
) -> None:
    status, body = post(server, "pay", b"x", key)
    assert status == 400
    assert message in body.decode()


def test_an_idempotency_key_of_100_characters_is_taken(server: ServerProcess) -> None:
    status, _ = post(server, "pay", b"x", "k" * 100)
    assert status == 200


async def test_a_subscription_whose_upload_is_refused_while_its_stream_lives_is_retried(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """Two nodes, no stickiness: an sse client's stream is on one node and its `POST E/send`
    lands on the other, which forwards it over Redis. With Redis down that POST is answered
    503 while the stream stays up. The subscription must be retried until Redis is back, not
    taken for a dropped connection (no reconnection would come to make it: before, a
    re-subscription sent this way was given up silently and its channel stayed quiet)."""
    nodes = [server_factory("--broker", redis_server.url) for _ in range(2)]
    proxy = FaultProxy([("127.0.0.1", node.port) for node in nodes])
    await proxy.start()
    try:
        url = proxy.url("/pushwire")
        async with connect(url, transports=["sse"], retry=QUICK) as client:
            await client.subscribe("first")  # the stream on node 0, the upload on node 1
            redis_server.stop()
            subscribing = asyncio.ensure_future(client.subscribe("later"))
            await asyncio.sleep(1.0)  # a few refused attempts (503) meanwhile
            assert not subscribing.done(), subscribing
            redis_server.start()
            await asyncio.wait_for(subscribing, WAIT)
            await publish_until_accepted(nodes[0], "later", "arrives")
            item = await next_item(client)
            while isinstance(item, Gap) and item.channel == "first":
                item = await next_item(client)  # Redis restarted: "first" changed epoch
            assert isinstance(item, Message) and item.data == "arrives", item
            assert client.reconnections == 0  # the stream stayed up all along
    finally:
        await proxy.stop()


# -- item 6: an epoch change, and what a node cannot know across a Redis restart ----------------


async def test_a_redis_restart_is_a_gap_from_the_last_message_the_subscriber_had(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """Redis restarts empty (a new epoch) while a subscriber has every message. Whether the
    restart lost anything, the node cannot know (another restart may have come and gone
    while it was not connected: the next test), so the subscriber gets a gap from the last
    message it had to just before the new epoch's first, then the new epoch's messages."""
    node = server_factory("--broker", redis_server.url)
    async with connect(node.url("/pushwire"), transports=["websocket"]) as client:
        await client.subscribe("ticker")
        for i in range(3):
            await publish_until_accepted(node, "ticker", f"before {i}")
        for i in range(3):
            assert await next_text(client) == f"before {i}"
        redis_server.stop()
        redis_server.start()
        offset = await publish_until_accepted(node, "ticker", "after")
        assert offset == 1  # a new epoch
        gap = await next_item(client)
        assert isinstance(gap, Gap), f"expected a gap, got {gap}"
        assert gap.from_offset == 3 and gap.to_offset == 0, gap
        assert gap.from_epoch != gap.to_epoch, gap
        item = await next_item(client)
        assert isinstance(item, Message), item
        assert (item.data, item.epoch, item.offset) == ("after", gap.to_epoch, 1)


async def test_messages_of_an_epoch_a_node_never_saw_are_in_a_gap(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """Redis restarts twice while a node's subscription is down (it reconnects slowly); in
    between, another node publishes a message to the epoch of the middle Redis, which the
    first node never sees. Its subscriber had every message before: the middle one must
    arrive or be inside a gap, never skipped silently (before, the node took the end of the
    first epoch it knew for where the new one began, and reported nothing)."""
    slow_back = ("--set", "broker_reconnect_min=6", "--set", "broker_reconnect_max=8")
    node_y = server_factory("--broker", redis_server.url, *slow_back)
    node_x = server_factory("--broker", redis_server.url)
    async with connect(node_y.url("/pushwire"), transports=["websocket"]) as client:
        await client.subscribe("ticker")
        for i in range(3):
            await publish_until_accepted(node_y, "ticker", f"before {i}")
        for i in range(3):
            assert await next_text(client) == f"before {i}"
        redis_server.stop()
        redis_server.start()
        assert await publish_until_accepted(node_x, "ticker", "middle") == 1
        redis_server.stop()
        redis_server.start()
        await publish_until_accepted(node_y, "ticker", "after")
        items: list[Message | Gap | Failure] = []
        while not any(isinstance(i, Message) and i.data == "after" for i in items):
            items.append(await next_item(client))
        got = [i.data if isinstance(i, Message) else type(i).__name__ for i in items]
        assert "middle" in got or "Gap" in got[: got.index("after")], f"received {got}"
        for item in items:
            if isinstance(item, Gap):
                assert (item.from_offset, item.to_offset) == (3, 0), item
