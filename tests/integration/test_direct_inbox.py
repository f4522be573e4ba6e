"""Direct messages through each user's inbox, with real servers and real clients (issue 14,
problems 2 and 4): a user away longer than its session's grace gets what it missed, or a
`Gap` with the exact range in `async for`; a session's trouble never costs another session
of the user a message; no bound of a session closes it."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from pushwire.client import Gap, Message, connect
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import Proxy

pytestmark = pytest.mark.integration

TRANSPORTS = ["websocket", "sse", "stream", "longpoll", "polling"]


def post(server: ServerProcess, path: str, body: bytes) -> dict[str, object]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        assert isinstance(answer, dict)
        return answer
    finally:
        conn.close()


def session_count(server: ServerProcess) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", "/api/stats")
        count = json.loads(conn.getresponse().read())["sessions"]
        assert isinstance(count, int)
        return count
    finally:
        conn.close()


async def away_past_grace(
    server: ServerProcess, far: ServerProcess, user: str, transport: str, inbox_size: int
) -> None:
    """A client of `user` on `server` (through a proxy) is kept away until its session
    expired; `inbox_size` + 2 direct messages are sent meanwhile on `far`; back, it gets a
    `Gap` for the 2 the inbox no longer holds, then the rest, in `async for`."""
    proxy = Proxy((server.host, server.port))
    await proxy.start()
    try:
        url = f"http://127.0.0.1:{proxy.port}/pushwire"
        async with connect(
            url,
            user=user,
            transports=[transport],
            reconnect_delay=0.05,
            reconnect_delay_max=0.1,
            poll_interval=0.02,
        ) as client:
            before = post(far, f"/api/send/{user}", b"before")
            first = await asyncio.wait_for(client.recv(), 10)
            assert isinstance(first, Message) and first.data == "before"
            assert (first.channel, first.epoch, first.offset) == (None, before["epoch"], 1)
            back = asyncio.ensure_future(client.wait_reconnected(30))
            proxy.refusing = True
            proxy.cut()
            # Offline past the session's grace: the server forgot the session.
            deadline = asyncio.get_running_loop().time() + 10
            while await asyncio.to_thread(session_count, server) != 0:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            texts = [f"while away {i}" for i in range(inbox_size + 2)]
            for text in texts:
                await asyncio.to_thread(post, far, f"/api/send/{user}", text.encode())
            proxy.refusing = False
            await back
            assert client.expired  # a new session...
            items = []
            async for item in client:  # ...that missed nothing silently
                items.append(item)
                if len(items) == inbox_size + 1:
                    break
            epoch = str(before["epoch"])
            assert items[0] == Gap(None, epoch, 1, epoch, 3), items[0]
            assert [(m.data, m.offset) for m in items[1:] if isinstance(m, Message)] == [
                (text, 4 + i) for i, text in enumerate(texts[2:])
            ]
            assert client.inbox_position == (epoch, inbox_size + 3)
    finally:
        await proxy.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_user_away_past_its_grace_gets_what_it_missed_and_a_gap_for_the_rest(
    server_factory: ServerFactory, transport: str
) -> None:
    """Problem 4: before the inbox, the messages sent meanwhile were lost and only
    `client.expired` said so (no range, nothing in `async for`)."""
    grace = (
        "--set",
        "session_grace=0.2",
        "--set",
        "poll_grace=0.3",
        "--set",
        "longpoll_timeout=0.3",
    )
    server = server_factory(*grace, "--set", "inbox_size=3")
    await away_past_grace(server, server, "ann", transport, 3)


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_offline_past_the_grace_on_two_nodes_the_inbox_is_in_redis(
    server_factory: ServerFactory, redis_server: RedisServer, transport: str
) -> None:
    """Sent on another node while the user was away (its session expired: a new one on its
    return), recovered from Redis, with the exact gap beyond the inbox's bounds."""
    options = (
        "--broker",
        redis_server.url,
        "--set",
        "session_grace=0.2",
        "--set",
        "poll_grace=0.3",
        "--set",
        "longpoll_timeout=0.3",
    )
    near = server_factory(*options, "--set", "inbox_size=4")
    far = server_factory(*options, "--set", "inbox_size=4")
    await away_past_grace(near, far, f"bob-{transport}", transport, 4)


async def test_a_second_device_starts_from_the_position_the_first_one_had(
    server: ServerProcess,
) -> None:
    async with connect(server.url("/pushwire"), user="cid", transports=["websocket"]) as phone:
        post(server, "/api/send/cid", b"seen on the phone")
        assert isinstance(await asyncio.wait_for(phone.recv(), 10), Message)
        position = phone.inbox_position
    post(server, "/api/send/cid", b"sent while nobody was on")
    async with connect(
        server.url("/pushwire"), user="cid", transports=["longpoll"], inbox_since=position
    ) as laptop:
        got = await asyncio.wait_for(laptop.recv(), 10)
        assert isinstance(got, Message) and got.data == "sent while nobody was on"


async def test_one_sessions_trouble_never_costs_another_session_a_message(
    server: ServerProcess,
) -> None:
    """Problem 2: a session of the user that never acknowledges (before the inbox: closed
    4003 past `max_unacked`, 1,000) and one whose connection is cut while direct messages,
    channel messages and presence changes flow to it; the user's other session gets every
    message, once, in order, and nobody is closed."""
    protocols = [Subprotocol("pushwire.v1")]
    async with (
        ws_connect(server.ws_url("/pushwire"), subprotocols=protocols) as silent,
        connect(server.url("/pushwire"), user="dee", transports=["websocket"]) as live,
    ):
        await live.subscribe("room", presence=True)
        await silent.send(json.dumps({"type": "hello", "user": "dee"}))
        assert json.loads(await asyncio.wait_for(silent.recv(), 10))["type"] == "welcome"
        cut = await ws_connect(server.ws_url("/pushwire"), subprotocols=protocols)
        await cut.send(json.dumps({"type": "hello", "user": "dee"}))
        assert json.loads(await asyncio.wait_for(cut.recv(), 10))["type"] == "welcome"
        subscribe = {"type": "subscribe", "id": 1, "channel": "room", "presence": True}
        await cut.send(json.dumps(subscribe))
        assert json.loads(await asyncio.wait_for(cut.recv(), 10))["type"] == "subscribed"
        count = 1200
        for i in range(count):
            if i == 600:
                cut.transport.abort()  # gone mid-flow, without a close: a leave follows
            await asyncio.to_thread(post, server, "/api/send/dee", f"d{i}".encode())
            await asyncio.to_thread(post, server, "/api/publish/room", f"c{i}".encode())
        got = [await asyncio.wait_for(live.recv(), 10) for _ in range(2 * count)]
        messages = [m for m in got if isinstance(m, Message)]
        assert [m.data for m in messages if m.channel is None] == [f"d{i}" for i in range(count)]
        assert [m.data for m in messages if m.channel == "room"] == [f"c{i}" for i in range(count)]
        frames = [json.loads(await asyncio.wait_for(silent.recv(), 10)) for _ in range(count)]
        assert [f["offset"] for f in frames] == list(range(1, count + 1))
        await silent.send(json.dumps({"type": "ping"}))  # still open: never acknowledged
        assert json.loads(await asyncio.wait_for(silent.recv(), 10)) == {"type": "pong"}


#: Longer than the default `session_grace` (60 s): the server forgets the session.
OFFLINE_SECONDS = 61.0


async def offline_for_a_minute(
    near: ServerProcess, far: ServerProcess, user: str, transport: str
) -> None:
    """A client of `user` on `near`, with the default settings, is offline for a minute
    (its session expires, or nearly); direct messages are sent on `far` meanwhile; it
    comes back on `far` and gets every one, once, in order."""
    tcp = transport == "tcp"
    assert near.tcp_port is not None and far.tcp_port is not None
    proxy = Proxy((near.host, near.tcp_port if tcp else near.port))
    await proxy.start()
    url = f"tcp://127.0.0.1:{proxy.port}" if tcp else f"http://127.0.0.1:{proxy.port}/pushwire"
    try:
        async with connect(
            url, user=user, transports=[transport], reconnect_delay=0.2, reconnect_delay_max=1
        ) as client:
            post(far, f"/api/send/{user}", b"before")
            first = await asyncio.wait_for(client.recv(), 30)
            assert isinstance(first, Message) and first.data == "before"
            back = asyncio.ensure_future(client.wait_reconnected(OFFLINE_SECONDS + 60))
            proxy.refusing = True
            proxy.cut()
            texts = [f"while offline {i}" for i in range(20)]
            for text in texts:
                await asyncio.to_thread(post, far, f"/api/send/{user}", text.encode())
            await asyncio.sleep(OFFLINE_SECONDS)  # the user's time away, not a wait for an event
            proxy.upstream = (far.host, far.tcp_port if tcp else far.port)  # back on `far`
            proxy.refusing = False
            await back  # a new session, or the old one handed over if its grace had not
            # run out yet (an HTTP transport's starts once its poll or stream is missed)
            items = [await asyncio.wait_for(client.recv(), 30) for _ in texts]
            assert [(i.data, i.offset) for i in items if isinstance(i, Message)] == [
                (text, 2 + n) for n, text in enumerate(texts)
            ], items
    finally:
        await proxy.stop()


async def test_directs_to_a_user_offline_for_a_minute_arrive_on_any_node_and_transport(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """Issue 14, "Must show": a user offline for a minute (past the default session grace)
    gets the direct messages sent meanwhile on another node, on every transport of the
    Python client, back on that other node (pushwire.js, one node, past a short grace:
    test_browser_client.py). Before the inbox they were sent to nobody."""
    options = ("--broker", redis_server.url, "--tcp-port", "0")
    near, far = server_factory(*options), server_factory(*options)
    await asyncio.gather(
        *(
            offline_for_a_minute(near, far, f"away-{transport}", transport)
            for transport in [*TRANSPORTS, "tcp"]
        )
    )
