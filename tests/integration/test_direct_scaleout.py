"""Direct messages to a user across pushwire processes on one real redis-server: every session
of the user on every node gets each one once, in order; one Redis subscription per user per
node, taken before the welcome and dropped with the user's last session there."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from pushwire.client import Client, Gap, Message, connect
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

PROTOCOLS = [Subprotocol("pushwire.v1")]


def post_many(node: ServerProcess, path: str, bodies: list[bytes]) -> list[tuple[int, bytes]]:
    """POST each body to `path` in turn on one keep-alive connection: status and body each."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    answers = []
    try:
        for body in bodies:
            conn.request("POST", path, body=body)
            response = conn.getresponse()
            answers.append((response.status, response.read()))
    finally:
        conn.close()
    return answers


async def send(node: ServerProcess, user: str, text: str) -> dict[str, object]:
    """`POST /api/send/<user>` on `node`: the JSON answer (asserting 200)."""
    [(status, body)] = await asyncio.to_thread(
        post_many, node, f"/api/send/{user}", [text.encode()]
    )
    assert status == 200, body
    answer = json.loads(body)
    assert isinstance(answer, dict)
    # Where the message went in the user's inbox: checked where it matters.
    assert isinstance(answer.pop("epoch"), str) and isinstance(answer.pop("offset"), int)
    return answer


async def numsub(redis_url: str, user: str) -> int:
    """How many nodes have a Redis subscription to `user`'s direct messages."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        [(_, count)] = await client.pubsub_numsub(f"pushwire:user:{user}")
        return int(count)
    finally:
        await client.aclose()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    """Ask `check` (state in another process, read through Redis) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def direct(client: Client) -> Message:
    item = await asyncio.wait_for(client.recv(), 10)
    assert isinstance(item, Message) and item.channel is None and item.offset is not None, item
    return item


async def test_a_send_on_one_node_reaches_every_session_of_the_user_once(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a, b, c = (server_factory("--broker", redis_server.url) for _ in range(3))
    async with (
        connect(a.url("/pushwire"), user="ann", transports=["websocket"]) as ann_a,
        connect(c.url("/pushwire"), user="ann", transports=["websocket"]) as ann_c,
        connect(b.url("/pushwire"), user="bob", transports=["websocket"]) as bob_b,
        ws_connect(a.ws_url("/ws/room?user=ann")) as ann_raw,
    ):
        # The raw session has no welcome: it is open once its own publish comes back.
        await ann_raw.send("raw here")
        assert await asyncio.wait_for(ann_raw.recv(), 10) == "raw here"
        assert await numsub(redis_server.url, "ann") == 2  # nodes A and C, not B

        # Sent on B, where ann has no session: A and C received it; B did not deliver it.
        assert await send(b, "ann", "hello ann") == {"user": "ann", "nodes": 2}
        for client in (ann_a, ann_c):
            got = await direct(client)
            assert (got.data, got.offset) == ("hello ann", 1)
        assert await asyncio.wait_for(ann_raw.recv(), 10) == "hello ann"

        # Nobody anywhere: 0 nodes, and nothing arrives anywhere.
        assert await send(b, "nobody", "into the void") == {"user": "nobody", "nodes": 0}
        # Markers prove nothing else came first: no duplicate, nothing for bob before his own.
        assert await send(a, "ann", "marker") == {"user": "ann", "nodes": 2}
        assert await send(c, "bob", "bob marker") == {"user": "bob", "nodes": 1}
        for client in (ann_a, ann_c):
            got = await direct(client)
            assert (got.data, got.offset) == ("marker", 2)
        assert await asyncio.wait_for(ann_raw.recv(), 10) == "marker"
        got = await direct(bob_b)
        assert (got.data, got.offset) == ("bob marker", 1)


async def test_a_hundred_directs_arrive_once_and_in_order_on_every_node(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a, b, c = (server_factory("--broker", redis_server.url) for _ in range(3))
    async with (
        connect(a.url("/pushwire"), user="ann", transports=["websocket"]) as ann_a,
        connect(c.url("/pushwire"), user="ann", transports=["websocket"]) as ann_c,
    ):
        texts = [f"direct {i}" for i in range(100)]
        answers = await asyncio.to_thread(
            post_many, b, "/api/send/ann", [text.encode() for text in texts]
        )
        assert [status for status, _ in answers] == [200] * 100
        assert {json.loads(body)["nodes"] for _, body in answers} == {2}
        for client in (ann_a, ann_c):
            got = [await direct(client) for _ in range(100)]
            assert [m.data for m in got] == texts
            assert [m.offset for m in got] == list(range(1, 101))
        assert await send(b, "ann", "marker") == {"user": "ann", "nodes": 2}
        for client in (ann_a, ann_c):
            assert (await direct(client)).data == "marker"  # nothing more came before it


async def test_a_node_listens_to_a_user_while_it_holds_a_session_of_them(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a, b = (server_factory("--broker", redis_server.url) for _ in range(2))
    url = redis_server.url
    assert await numsub(url, "ann") == 0
    async with connect(b.url("/pushwire"), user="ann", transports=["websocket"]) as ann_b:
        # Confirmed before the welcome: the subscription is there once connect returns.
        assert await numsub(url, "ann") == 1
        first = await connect(a.url("/pushwire"), user="ann", transports=["websocket"])
        second = await connect(a.url("/pushwire"), user="ann", transports=["websocket"])
        assert await numsub(url, "ann") == 2  # one per node, not per session
        await first.close()
        assert await send(a, "ann", "still here") == {"user": "ann", "nodes": 2}
        assert (await direct(second)).data == "still here"
        assert (await direct(ann_b)).data == "still here"
        await second.close()  # ann's last session on A: A unsubscribes

        async def one_left() -> bool:
            return await numsub(url, "ann") == 1

        await until(one_left, "node A unsubscribed ann")
        assert await send(b, "ann", "only b") == {"user": "ann", "nodes": 1}
        assert (await direct(ann_b)).data == "only b"

        # A new session on A subscribes again, before its welcome; a send right after it
        # reaches it.
        async with connect(a.url("/pushwire"), user="ann", transports=["websocket"]) as again:
            assert await numsub(url, "ann") == 2
            assert await send(b, "ann", "welcome back") == {"user": "ann", "nodes": 2}
            assert (await direct(again)).data == "welcome back"
            assert (await direct(ann_b)).data == "welcome back"


async def test_a_session_handed_over_keeps_receiving_directs_from_a_third_node(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a, b, c = (server_factory("--broker", redis_server.url) for _ in range(3))
    async with ws_connect(a.ws_url("/pushwire"), subprotocols=PROTOCOLS) as old:
        await old.send(json.dumps({"type": "hello", "user": "ann"}))
        welcome = json.loads(await asyncio.wait_for(old.recv(), 10))
        session, secret = welcome["session"], welcome["resume"]
        start = welcome["inbox"]
        assert start["offset"] == 0
        assert await send(b, "ann", "on a") == {"user": "ann", "nodes": 1}
        assert json.loads(await asyncio.wait_for(old.recv(), 10))["offset"] == 1

        async with ws_connect(c.ws_url("/pushwire"), subprotocols=PROTOCOLS) as new:
            inbox = {"epoch": start["epoch"], "offset": 1}
            hello = {"type": "hello", "session": session, "resume": secret, "inbox": inbox}
            await new.send(json.dumps(hello))
            welcome = json.loads(await asyncio.wait_for(new.recv(), 10))
            assert welcome["resumed"] is True and welcome["user"] == "ann"
            assert welcome["session"].split(".")[0] != session.split(".")[0]
            assert welcome["inbox"] == inbox
            # Node C listened to ann before the welcome; A lets go once it handed over.
            answer = await send(b, "ann", "on c")
            assert answer["nodes"] in (1, 2)
            got = json.loads(await asyncio.wait_for(new.recv(), 10))
            assert (got["type"], got["offset"], got["data"]) == ("message", 2, "on c")
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # the old connection got nothing more, then 4004
                    frame = json.loads(await asyncio.wait_for(old.recv(), 10))
                    assert frame["type"] != "message", frame
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004

            async def only_c() -> bool:
                return await numsub(redis_server.url, "ann") == 1

            await until(only_c, "node A unsubscribed ann after the hand-over")
            assert await send(b, "ann", "still on c") == {"user": "ann", "nodes": 1}
            got = json.loads(await asyncio.wait_for(new.recv(), 10))
            assert (got["offset"], got["data"]) == (3, "still on c")


async def recv_json(ws: ClientConnection) -> dict[str, object]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(frame, dict)
    return frame


async def test_redis_down_makes_a_send_503_and_the_clients_carry_on(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a, b = (server_factory("--broker", redis_server.url) for _ in range(2))
    loop = asyncio.get_running_loop()
    async with connect(a.url("/pushwire"), user="ann", transports=["websocket"]) as ann:
        assert await send(b, "ann", "before") == {"user": "ann", "nodes": 1}
        assert (await direct(ann)).data == "before"
        redis_server.stop()
        started = loop.time()
        [(status, body)] = await asyncio.to_thread(post_many, b, "/api/send/ann", [b"lost"])
        assert status == 503 and b"unavailable" in body, (status, body)
        assert loop.time() - started < 5  # quickly: refused, not queued

        redis_server.start()

        # Once both nodes are back (B publishes, A's subscription to ann is restored), sends
        # reach ann again on the same connection.
        async def delivered() -> bool:
            [(status, body)] = await asyncio.to_thread(post_many, b, "/api/send/ann", [b"after"])
            return status == 200 and json.loads(body)["nodes"] == 1

        await until(delivered, "directs flow again", timeout=20)
        # Redis restarted without its data: the inbox has a new epoch, and whatever the old
        # one held after what ann had may be lost: a gap says so, then the new messages.
        gap = await asyncio.wait_for(ann.recv(), 10)
        assert isinstance(gap, Gap) and gap.channel is None, gap
        assert (gap.from_offset, gap.to_offset) == (1, 0) and gap.from_epoch != gap.to_epoch
        got = await direct(ann)  # nothing sent while it was down arrives, nor twice
        assert (got.data, got.epoch, got.offset) == ("after", gap.to_epoch, 1)


async def test_directs_sent_during_a_hand_over_arrive_once_in_order(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """A sender on a third node keeps sending while the session moves: what the client ends
    up with (acknowledged on the old connection, then everything on the new one) is every
    accepted message, once, in order."""
    a, b, c = (server_factory("--broker", redis_server.url) for _ in range(3))
    sent: list[str] = []
    stop = asyncio.Event()

    def sender(user: str) -> None:
        conn = http.client.HTTPConnection(b.host, b.port, timeout=10)
        try:
            i = 0
            while not stop.is_set():
                text = f"d{i}"
                conn.request("POST", f"/api/send/{user}", body=text.encode())
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                sent.append(text)
                i += 1
        finally:
            conn.close()

    for round_ in range(3):
        user = f"ann{round_}"
        sent.clear()
        stop.clear()
        async with ws_connect(a.ws_url("/pushwire"), subprotocols=PROTOCOLS) as old:
            await old.send(json.dumps({"type": "hello", "user": user}))
            opened = await recv_json(old)
            session, secret = opened["session"], opened["resume"]
            start = opened["inbox"]
            assert isinstance(start, dict)
            sending = asyncio.ensure_future(asyncio.to_thread(sender, user))
            got: list[str] = []
            while len(got) < 20:  # the session gets directs on node A
                frame = await recv_json(old)
                got.append(str(frame["data"]))
            async with ws_connect(c.ws_url("/pushwire"), subprotocols=PROTOCOLS) as new:
                inbox = {"epoch": start["epoch"], "offset": len(got)}
                hello = {"type": "hello", "session": session, "resume": secret, "inbox": inbox}
                await new.send(json.dumps(hello))
                welcome = await recv_json(new)
                assert welcome["resumed"] is True
                stop.set()
                await sending
                await asyncio.to_thread(post_many, b, f"/api/send/{user}", [b"end"])
                while True:
                    frame = await recv_json(new)
                    assert frame["type"] == "message", frame
                    assert frame["offset"] == len(got) + 1, (frame, len(got))  # no gap, no repeat
                    got.append(str(frame["data"]))
                    if frame["data"] == "end":
                        break
        assert got == [*sent, "end"]
