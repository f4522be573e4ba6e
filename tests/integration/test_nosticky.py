"""No sticky sessions: two pushwire nodes on one Redis behind a round-robin TCP proxy.

Every request of a client goes through the proxy on a connection of its own (the proxy adds
`Connection: close`), and the proxy sends each new connection to the next node, so the
consecutive requests of one client really alternate between the nodes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from pushwire.client import Client, Message, connect
from tests.integration.scaleout_helpers import RoundRobinProxy
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration


def post(node: ServerProcess, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    conn.request("POST", path, body=body)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


async def publish(node: ServerProcess, channel: str, text: str) -> None:
    status, body = await asyncio.to_thread(post, node, f"/api/publish/{channel}", text.encode())
    assert status == 200, body


async def send_direct(nodes: list[ServerProcess], user: str, text: str) -> int:
    """`POST /api/send/<user>` on the first node (it reaches every node); the number of nodes
    that got it: 1, the node holding the user's session (2 while a node that just handed the
    session over has not yet dropped its subscription to the user)."""
    status, body = await asyncio.to_thread(post, nodes[0], f"/api/send/{user}", text.encode())
    assert status == 200, body
    count = json.loads(body)["nodes"]
    assert isinstance(count, int)
    return count


def stats(node: ServerProcess) -> dict[str, int]:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    conn.request("GET", "/api/stats")
    result: dict[str, int] = json.loads(conn.getresponse().read())
    conn.close()
    return result


async def receive(client: Client, count: int) -> list[Message]:
    got = []
    for _ in range(count):
        item = await asyncio.wait_for(client.recv(), 20)
        assert isinstance(item, Message), item
        got.append(item)
    return got


async def completed_polls(proxy: RoundRobinProxy, count: int, timeout: float = 20) -> None:
    """Until `count` more long-polls than now have been answered by a node."""

    def answered() -> int:
        return sum(
            1 for i, line, status in proxy.log if "/longpoll?cursor=" in line and i >= 0 and status
        )

    target = answered() + count
    async with asyncio.timeout(timeout):
        while answered() < target:
            await asyncio.sleep(0.05)


async def nothing_more(client: Client, nodes: list[ServerProcess], channel: str) -> None:
    """Nothing arrives twice: the next message after everything expected is a fresh one."""
    await publish(nodes[0], channel, "the end")
    last = await asyncio.wait_for(client.recv(), 20)
    assert isinstance(last, Message) and last.data == "the end", last


@pytest.fixture
async def proxy_pair(
    server_factory: ServerFactory, redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RoundRobinProxy, list[ServerProcess]]]:
    extra: tuple[str, ...] = getattr(request, "param", ())
    nodes = [server_factory("--broker", redis_server.url, *extra) for _ in range(2)]
    proxy = RoundRobinProxy(nodes)
    await proxy.start()
    try:
        yield proxy, nodes
    finally:
        await proxy.stop()


@pytest.mark.parametrize("proxy_pair", [("--set", "longpoll_timeout=1")], indirect=True)
async def test_a_long_poll_client_on_alternating_nodes_gets_everything_once_in_order(
    proxy_pair: tuple[RoundRobinProxy, list[ServerProcess]],
) -> None:
    proxy, nodes = proxy_pair
    url = proxy.url("/pushwire")
    async with connect(url, user="alice", transports=["longpoll"]) as client:
        await client.subscribe("room")
        expected = []
        for i in range(30):
            text = f"m{i}"
            await publish(nodes[i % 2], "room", text)  # from both nodes
            expected.append(text)
            if i in (9, 19):
                # The user's session lives on one node: exactly one node has it.
                assert await send_direct(nodes, "alice", f"direct {i}") == 1
            if i == 14:
                # Three polls in a row answered 503: asked again, with the same cursor.
                proxy.refuse = ("GET /pushwire/longpoll?cursor=", 3)
        got = await receive(client, 32)
        assert [m.data for m in got if m.channel == "room"] == expected
        assert [(m.offset, m.data) for m in got if m.channel is None] == [
            (1, "direct 9"),
            (2, "direct 19"),
        ]
        # Polls held at the far node past the long-poll timeout come back empty, forwarded.
        await completed_polls(proxy, 2)
        await nothing_more(client, nodes, "room")
        # Forwarded, not resumed: one session throughout.
        assert client.reconnections == 0 and client.expired == []
    assert proxy.served("GET /pushwire/longpoll?cursor=") == {0, 1}
    assert proxy.served("POST /pushwire/send ") == {0, 1}
    # Every poll that reached a node answered 200 (but the one the client's close cut short).
    polls = [
        (index, line, status) for index, line, status in proxy.log if "/longpoll?cursor=" in line
    ]
    reached = [status for index, _, status in polls if index >= 0]
    assert len(reached) > 4 and all(" 200 " in status for status in reached[:-1]), reached
    refused = [n for n, (index, _, _) in enumerate(polls) if index == -1]
    assert len(refused) == 3
    for n in refused:  # the retry asks with the cursor of the refused poll
        assert polls[n + 1][1] == polls[n][1]


async def test_an_sse_client_reconnecting_to_the_other_node_each_time_loses_nothing(
    proxy_pair: tuple[RoundRobinProxy, list[ServerProcess]],
) -> None:
    proxy, nodes = proxy_pair
    url = proxy.url("/pushwire")
    async with connect(url, user="bob", transports=["sse"], reconnect_delay=0.05) as client:
        await client.subscribe("news")
        first_session = client.session
        expected, directs = [], []
        for round_ in range(4):
            # Hold new connections, cut the stream: the session waits on its node meanwhile.
            proxy.gate.clear()
            back = asyncio.ensure_future(client.wait_reconnected(20))
            await asyncio.sleep(0)
            assert proxy.cut("POST /pushwire/sse ") == 1
            for i in range(10):
                text = f"r{round_} m{i}"
                await publish(nodes[i % 2], "news", text)
                expected.append(text)
            # Not acknowledged before the stream moves: the next node must re-send it.
            assert await send_direct(nodes, "bob", f"direct {round_}") in (1, 2)  # see send_direct
            directs.append(f"direct {round_}")
            proxy.gate.set()
            await back
            got = await receive(client, 11)
            assert [m.data for m in got if m.channel == "news"] == expected[-10:]
            assert [m.data for m in got if m.channel is None] == directs[-1:]
        await nothing_more(client, nodes, "news")
        assert client.reconnections == 4
        # Each resumption moved the session: resumed every time, never expired.
        assert client.expired == [] and client.session != first_session
    streams = [index for index, line, _ in proxy.log if "POST /pushwire/sse " in line]
    assert streams == [0, 1, 0, 1, 0]  # every reconnection on the other node
    assert proxy.served("POST /pushwire/send ") == {0, 1}


@pytest.mark.parametrize(
    "proxy_pair", [("--set", "node_ttl=1", "--set", "longpoll_timeout=1")], indirect=True
)
async def test_a_killed_home_node_is_410_then_the_client_resumes_and_recovers(
    proxy_pair: tuple[RoundRobinProxy, list[ServerProcess]],
) -> None:
    proxy, nodes = proxy_pair
    url = proxy.url("/pushwire")
    async with connect(url, user="carol", transports=["longpoll"], reconnect_delay=0.05) as client:
        await client.subscribe("feed")
        await publish(nodes[0], "feed", "before")
        assert [m.data for m in await receive(client, 1)] == ["before"]
        old_session = client.session
        assert old_session is not None
        # Which node is home: the one that holds the user's session.
        counts = [(await asyncio.to_thread(stats, node))["sessions"] for node in nodes]
        assert sorted(counts) == [0, 1]
        home = counts.index(1)
        assert await send_direct(nodes, "carol", "hi") == 1
        survivor = nodes[1 - home]
        assert [m.data for m in await receive(client, 1)] == ["hi"]

        back = asyncio.ensure_future(client.wait_reconnected(30))
        await asyncio.sleep(0)
        nodes[home].stop(signal.SIGKILL)
        proxy.nodes = [survivor]  # the load balancer takes the dead node out
        for i in range(10):
            await publish(survivor, "feed", f"after {i}")
        await back
        got = await receive(client, 10)
        assert [m.data for m in got] == [f"after {i}" for i in range(10)]
        # Told, not silent: the old session (and any direct message it kept) is gone.
        assert client.expired == [old_session]
        await nothing_more(client, [survivor], "feed")
    statuses = [status for _, line, status in proxy.log if "GET /pushwire/longpoll?cursor=" in line]
    assert any(" 410 " in status for status in statuses), statuses


async def test_a_redis_restart_keeps_a_long_poll_session_routed_across_nodes(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    nodes = [
        server_factory("--broker", redis_server.url, "--set", "longpoll_timeout=1")
        for _ in range(2)
    ]
    proxy = RoundRobinProxy(nodes)
    await proxy.start()
    try:
        url = proxy.url("/pushwire")
        async with connect(url, transports=["longpoll"], reconnect_delay=0.05) as client:
            await client.subscribe("news")
            await publish(nodes[0], "news", "before")
            assert [m.data for m in await receive(client, 1)] == ["before"]

            # Redis loses everything: node keys, subscriptions, channel history.
            redis_server.stop()
            redis_server.start()
            mark = len(proxy.log)
            async with asyncio.timeout(20):
                while (await asyncio.to_thread(post, nodes[1], "/api/publish/news", b"after"))[
                    0
                ] != 200:
                    await asyncio.sleep(0.1)  # until the node's broker is back
            # The channel's history is gone (a new epoch): a gap, then the message.
            item = await asyncio.wait_for(client.recv(), 20)
            while not isinstance(item, Message):
                item = await asyncio.wait_for(client.recv(), 20)
            assert item.data == "after"
            await completed_polls(proxy, 4)
            await nothing_more(client, nodes, "news")
            # The session was not lost: its node was never taken for dead.
            assert client.expired == []
        after = [(i, status) for i, line, status in proxy.log[mark:] if "/longpoll?cursor=" in line]
        assert {i for i, status in after if " 200 " in status} == {0, 1}, after
        assert not [status for _, status in after if " 410 " in status], after
    finally:
        await proxy.stop()


async def test_a_websocket_resuming_on_another_node_takes_the_session_over(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    first, second = (server_factory("--broker", redis_server.url) for _ in range(2))
    protocols = [Subprotocol("pushwire.v1")]
    async with ws_connect(first.ws_url("/pushwire"), subprotocols=protocols) as old:
        await old.send(json.dumps({"type": "hello", "user": "dave"}))
        welcome = json.loads(await asyncio.wait_for(old.recv(), 10))
        session, secret = welcome["session"], welcome["resume"]
        assert welcome["resumed"] is False and "." in session
        start = welcome["inbox"]
        assert start["offset"] == 0
        assert await send_direct([first, second], "dave", "kept") == 1
        direct = json.loads(await asyncio.wait_for(old.recv(), 10))
        assert (direct["offset"], direct["data"]) == (1, "kept")

        async with ws_connect(second.ws_url("/pushwire"), subprotocols=protocols) as new:
            # As if "kept" never reached the client: it names the position before it.
            inbox = {"epoch": start["epoch"], "offset": 0}
            hello = {"type": "hello", "session": session, "resume": secret, "inbox": inbox}
            await new.send(json.dumps(hello))
            welcome = json.loads(await asyncio.wait_for(new.recv(), 10))
            assert welcome["resumed"] is True and "expired" not in welcome
            assert welcome["user"] == "dave"
            assert welcome["resume"] == secret  # the secret moved with the session
            # A new id, naming the new home node.
            assert welcome["session"].split(".")[0] != session.split(".")[0]
            assert welcome["inbox"] == inbox
            again = json.loads(await asyncio.wait_for(new.recv(), 10))
            assert (again["type"], again["offset"], again["data"]) == ("message", 1, "kept")
            # The old connection was superseded, the old node forgot the session.
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(old.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004
            assert await send_direct([first, second], "dave", "next") in (1, 2)  # see send_direct
            after = json.loads(await asyncio.wait_for(new.recv(), 10))
            assert (after["offset"], after["data"]) == (2, "next")  # the inbox carries on

        # A session nobody holds any more: expired, as without routing.
        async with ws_connect(first.ws_url("/pushwire"), subprotocols=protocols) as late:
            await late.send(json.dumps({"type": "hello", "session": session, "resume": secret}))
            welcome = json.loads(await asyncio.wait_for(late.recv(), 10))
            assert welcome["resumed"] is False and welcome["expired"] == session


async def test_a_forwarded_request_to_a_silent_node_is_503_within_the_bound(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    node = server_factory(
        "--broker",
        redis_server.url,
        *("--set", "forward_timeout=1", "--set", "longpoll_timeout=1", "--set", "max_forwarded=1"),
    )
    # A node that is alive (its key is there) and subscribed, but never answers.
    silent = "abcdef012345"
    redis = aioredis.Redis.from_url(redis_server.url)
    pubsub = redis.pubsub()
    try:
        await redis.set(f"pushwire:node:{silent}", b"1", px=60_000)
        await pubsub.subscribe(f"pushwire:node:{silent}")
        session = f"{silent}.AAAAAAAAAAAAAAAAAAAAAA"

        def get(target: str) -> tuple[int, bytes, float]:
            conn = http.client.HTTPConnection(node.host, node.port, timeout=20)
            began = time.monotonic()
            conn.request("GET", target, headers={"Pushwire-Session": f"{session} s3cret"})
            response = conn.getresponse()
            result = response.status, response.read(), time.monotonic() - began
            conn.close()
            return result

        status, body, took = await asyncio.to_thread(get, "/pushwire/polling?cursor=0")
        assert status == 503 and json.loads(body)["code"] == "unavailable", body
        assert 0.9 <= took < 4.0, took  # forward_timeout
        status, body, took = await asyncio.to_thread(get, "/pushwire/longpoll?cursor=0")
        assert status == 503, body
        assert 1.9 <= took < 5.0, took  # longpoll_timeout + forward_timeout
        # What went over Redis: the fields that matter (the secret the client showed, for
        # the home node to check), a request id, the reply node.
        requests = []
        for _ in range(10):
            got = await pubsub.get_message(timeout=1)
            if got is not None and got["type"] == "message":
                requests.append(json.loads(got["data"].partition(b"\n")[0]))
            if len(requests) == 2:
                break
        fields = ("op", "session", "secret", "endpoint", "kind", "cursor")
        assert [tuple(r[name] for name in fields) for r in requests] == [
            ("poll", session, "s3cret", "general", "polling", "0"),
            ("poll", session, "s3cret", "general", "longpoll", "0"),
        ]

        # At most max_forwarded (here 1) requests in flight: one more is 503 at once.
        held = asyncio.ensure_future(asyncio.to_thread(get, "/pushwire/longpoll?cursor=0"))
        while (got := await pubsub.get_message(timeout=5)) is None or got["type"] != "message":
            pass  # until the held request is on its way to the silent node
        status, body, took = await asyncio.to_thread(get, "/pushwire/polling?cursor=0")
        assert status == 503 and b"too many" in body, body  # refused, not waited for
        assert (await held)[0] == 503

        # Alive (the key is there) but not subscribed, say while its Redis connection is
        # restored: 503 at once, nothing to wait for.
        await pubsub.unsubscribe(f"pushwire:node:{silent}")
        status, body, took = await asyncio.to_thread(get, "/pushwire/polling?cursor=0")
        assert status == 503 and b"not reachable" in body, body  # not waited for

        # Neither key nor subscriber: dead. 410 at once, the client resumes.
        await redis.delete(f"pushwire:node:{silent}")
        status, body, took = await asyncio.to_thread(get, "/pushwire/polling?cursor=0")
        assert status == 410 and json.loads(body)["code"] == "session_unknown", body
    finally:
        close_pubsub: Callable[[], Awaitable[None]] = pubsub.aclose  # untyped in some redis-py
        await close_pubsub()
        await redis.aclose()
