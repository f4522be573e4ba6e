"""Fan-out over real sockets: raw channel subscribers, the publish API, direct push to users."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import PUSHWIRE_V1
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

SUBSCRIBERS = 200
MESSAGES = 50


def post(
    server: ServerProcess, path: str, body: bytes, content_type: str = "text/plain"
) -> dict[str, Any]:
    request = urllib.request.Request(
        server.url(path), data=body, headers={"Content-Type": content_type}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def receive_all(ws: ClientConnection, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), 20) for _ in range(count)]


async def hello(ws: ClientConnection, user: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "user": user}))
    welcome: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome"
    return welcome


async def test_every_raw_subscriber_gets_every_message_in_order(server: ServerProcess) -> None:
    url = server.ws_url("/ws/room")
    subscribers = await asyncio.gather(*(connect(url) for _ in range(SUBSCRIBERS)))
    try:
        async with connect(url) as publisher:
            sent = [f"message {i}" if i % 2 else f"message {i}".encode() for i in range(MESSAGES)]
            for message in sent:
                await publisher.send(message)
            # The publisher is a member of the channel too: it gets its own messages back.
            assert await receive_all(publisher, MESSAGES) == sent
            received = await asyncio.gather(*(receive_all(s, MESSAGES) for s in subscribers))
        for messages in received:
            assert messages == sent  # every one, in order, text as text, binary as binary
    finally:
        await asyncio.gather(*(s.close() for s in subscribers))


async def test_the_publish_api_reaches_raw_and_envelope_subscribers(server: ServerProcess) -> None:
    async with (
        connect(server.ws_url("/ws/news")) as raw,
        connect(server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1) as enveloped,
    ):
        await hello(enveloped, "reader")
        await enveloped.send(json.dumps({"type": "subscribe", "id": 1, "channel": "news"}))
        subscribed = json.loads(await asyncio.wait_for(enveloped.recv(), 5))
        assert subscribed["type"] == "subscribed"

        first = await asyncio.to_thread(post, server, "/api/publish/news", "早上好".encode())
        second = await asyncio.to_thread(
            post, server, "/api/publish/news", b"\x00\xff", "application/octet-stream"
        )
        assert first["channel"] == "news"
        assert (first["epoch"], first["offset"] + 1) == (second["epoch"], second["offset"])

        assert await receive_all(raw, 2) == ["早上好", b"\x00\xff"]
        text = json.loads(await asyncio.wait_for(enveloped.recv(), 5))
        assert text == {
            "type": "message",
            "channel": "news",
            "epoch": first["epoch"],
            "offset": first["offset"],
            "data": "早上好",
        }
        binary = await asyncio.wait_for(enveloped.recv(), 5)
        assert isinstance(binary, bytes)
        header, _, payload = binary.partition(b"\n")
        assert json.loads(header)["offset"] == second["offset"]
        assert payload == b"\x00\xff"


async def test_the_publish_command_reaches_subscribers(server: ServerProcess) -> None:
    async with connect(server.ws_url("/ws/alerts")) as subscriber:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pushwire", "publish", server.url(), "alerts", "disk full"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["channel"] == "alerts"
        assert await asyncio.wait_for(subscriber.recv(), 5) == "disk full"


async def test_direct_push_reaches_every_session_of_the_user_and_nobody_else(
    server: ServerProcess,
) -> None:
    envelope_url = server.ws_url("/pushwire")
    async with (
        connect(envelope_url, subprotocols=PUSHWIRE_V1) as alice_phone,
        connect(envelope_url, subprotocols=PUSHWIRE_V1) as alice_laptop,
        connect(server.ws_url("/pushwire?user=alice")) as alice_raw,
        connect(envelope_url, subprotocols=PUSHWIRE_V1) as bob,
    ):
        await hello(alice_phone, "alice")
        await hello(alice_laptop, "alice")
        await hello(bob, "bob")
        result = await asyncio.to_thread(post, server, "/api/send/alice", b"for alice only")
        assert (result["user"], result["offset"], result["nodes"], result["sessions"]) == (
            "alice",
            1,
            1,
            3,
        )

        for session in (alice_phone, alice_laptop):
            message = json.loads(await asyncio.wait_for(session.recv(), 5))
            assert (message["type"], message["offset"]) == ("message", 1)
            assert message["data"] == "for alice only"
        assert await asyncio.wait_for(alice_raw.recv(), 5) == "for alice only"

        # Bob got nothing: the next thing he receives is the answer to his own ping.
        await bob.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(bob.recv(), 5)) == {"type": "pong"}


async def test_direct_push_to_an_absent_user_reaches_nobody(server: ServerProcess) -> None:
    result = await asyncio.to_thread(post, server, "/api/send/nobody", b"hello?")
    # Nobody got it live; it waits in the user's inbox, at its first offset.
    assert isinstance(result.pop("epoch"), str)
    assert result == {"user": "nobody", "offset": 1, "nodes": 0, "sessions": 0}


async def test_presence_lists_the_sessions_in_a_channel_then_their_joins_and_leaves(
    server: ServerProcess,
) -> None:
    url = server.ws_url("/pushwire")
    async with connect(url, subprotocols=PUSHWIRE_V1) as watcher:
        await hello(watcher, "watcher")
        await watcher.send(
            json.dumps({"type": "subscribe", "id": 1, "channel": "lobby", "presence": True})
        )
        assert json.loads(await watcher.recv())["type"] == "subscribed"
        snapshot = json.loads(await asyncio.wait_for(watcher.recv(), 5))
        (me,) = snapshot["members"]
        assert snapshot == {
            "type": "presence",
            "channel": "lobby",
            "count": 1,
            "members": [{"member": me["member"], "user": "watcher", "info": {"via": "websocket"}}],
            "truncated": False,
        }
        # A plain WebSocket on /ws/lobby is a member too: anonymous, with its info.
        async with connect(server.ws_url("/ws/lobby")):
            joined = json.loads(await asyncio.wait_for(watcher.recv(), 5))
            assert joined["type"] == "join" and joined["count"] == 2
            assert (joined["member"]["user"], joined["member"]["info"]) == (
                None,
                {"via": "websocket"},
            )
            await watcher.send(json.dumps({"type": "presence", "id": 2, "channel": "lobby"}))
            answer = json.loads(await asyncio.wait_for(watcher.recv(), 5))
            assert (answer["id"], answer["count"], len(answer["members"])) == (2, 2, 2)
        left = json.loads(await asyncio.wait_for(watcher.recv(), 5))
        assert left == {**joined, "type": "leave", "count": 1}
        await watcher.send(json.dumps({"type": "presence", "id": 3, "channel": "elsewhere"}))
        refused = json.loads(await asyncio.wait_for(watcher.recv(), 5))
        assert (refused["type"], refused["id"], refused["code"]) == ("error", 3, "bad_request")


async def test_a_session_that_acknowledges_nothing_is_never_closed_for_it(
    server_factory: ServerFactory,
) -> None:
    """Direct messages live in the user's inbox, not per session: no bound of a session's
    closes it, however many it was sent (the inbox keeps 5, the session gets all 50)."""
    server = server_factory("--set", "inbox_size=5")
    async with connect(server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1) as greedy:
        await hello(greedy, "greedy")
        bodies = [f"{i}".encode() for i in range(50)]
        for body in bodies:
            await asyncio.to_thread(post, server, "/api/send/greedy", body)
        got = [json.loads(await asyncio.wait_for(greedy.recv(), 5)) for _ in bodies]
        assert [m["offset"] for m in got] == list(range(1, 51))
        await greedy.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(greedy.recv(), 5)) == {"type": "pong"}
