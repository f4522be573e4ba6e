"""The Python API: an app's own hub handlers, served in-process on a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from pushwire import App, Config, ConnectRequest, Forbidden, Hub, Session
from pushwire.server.listener import Server
from tests.helpers import PUSHWIRE_V1

pytestmark = pytest.mark.integration


class ChatApp:
    """An app with every handler: refuses mallory, guards "admin", relays messages."""

    def __init__(self) -> None:
        self.hub = Hub(config=Config(port=0))
        self.disconnected: asyncio.Queue[tuple[str | None, int]] = asyncio.Queue()
        hub = self.hub

        @hub.on_connect
        async def on_connect(request: ConnectRequest) -> str | None:
            if request.user == "mallory":
                raise Forbidden("mallory is banned")
            return request.user

        @hub.on_subscribe
        def on_subscribe(session: Session, channel: str) -> bool:
            return channel != "admin" or session.user == "root"

        @hub.on_publish
        async def on_publish(session: Session, channel: str, data: str | bytes) -> bool:
            return not (isinstance(data, str) and "spam" in data)

        @hub.on_message
        async def on_message(session: Session, data: str | bytes) -> None:
            await hub.publish("relay", f"{session.user}: {data!r}")
            hub.send(session.user or "", "got it")

        @hub.on_disconnect
        def on_disconnect(session: Session, code: int, reason: str) -> None:
            self.disconnected.put_nowait((session.user, code))


@pytest.fixture
async def app() -> AsyncIterator[tuple[ChatApp, str]]:
    chat = ChatApp()
    server = Server(App(chat.hub), chat.hub.config)
    await server.start()
    port = server.sockets[0].getsockname()[1]
    yield chat, f"ws://127.0.0.1:{port}"
    await server.shutdown()


async def envelope(url: str, user: str) -> ClientConnection:
    ws = await connect(url + "/pushwire", subprotocols=PUSHWIRE_V1)
    await ws.send(json.dumps({"type": "hello", "user": user}))
    return ws


async def next_envelope(ws: ClientConnection) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[no-any-return]


async def test_the_connect_handler_can_refuse_with_forbidden(app: tuple[ChatApp, str]) -> None:
    _, url = app
    ws = await envelope(url, "mallory")
    assert await next_envelope(ws) == {
        "type": "error",
        "code": "forbidden",
        "message": "mallory is banned",
    }
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4101


async def test_a_raw_client_refused_by_the_connect_handler_gets_4101(
    app: tuple[ChatApp, str],
) -> None:
    _, url = app
    async with connect(url + "/ws/room?user=mallory") as ws:
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4101
    assert ws.close_reason == "mallory is banned"


async def test_the_subscribe_handler_guards_a_channel(app: tuple[ChatApp, str]) -> None:
    _, url = app
    alice, root = await envelope(url, "alice"), await envelope(url, "root")
    for ws in (alice, root):
        assert (await next_envelope(ws))["type"] == "welcome"
        await ws.send(json.dumps({"type": "subscribe", "id": 7, "channel": "admin"}))
    assert await next_envelope(alice) == {
        "type": "error",
        "id": 7,
        "code": "forbidden",
        "message": "subscription to 'admin' refused",
    }
    assert (await next_envelope(root))["type"] == "subscribed"
    await alice.close()
    await root.close()


async def test_the_subscribe_handler_guards_every_door_to_the_channel(
    app: tuple[ChatApp, str],
) -> None:
    # It used to run only for the pushwire.v1 subscribe envelope: raw /ws/<channel>,
    # /ws/<channel> with pushwire.v1 and raw /sse/<channel> let a refused user read.
    _, url = app
    async with connect(url + "/ws/admin?user=alice") as raw:
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(raw.recv(), 5)
    assert (raw.close_code, raw.close_reason) == (4101, "subscription to 'admin' refused")
    enveloped = await connect(url + "/ws/admin", subprotocols=PUSHWIRE_V1)
    await enveloped.send(json.dumps({"type": "hello", "user": "alice"}))
    assert (await next_envelope(enveloped))["type"] == "welcome"
    assert (await next_envelope(enveloped))["code"] == "forbidden"
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(enveloped.recv(), 5)
    host, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /sse/admin?user=alice HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 403 Forbidden")
    writer.close()
    async with connect(url + "/ws/admin?user=root") as allowed:
        pass
    assert allowed.close_code == 1000


async def test_the_publish_handler_checks_every_publish_a_client_makes(
    app: tuple[ChatApp, str],
) -> None:
    chat, url = app
    alice = await envelope(url, "alice")
    assert (await next_envelope(alice))["type"] == "welcome"
    async with connect(url + "/ws/news") as raw, connect(url + "/ws/news") as listener:
        for index, text in enumerate(["fine", "spam!", "fine again"]):
            await alice.send(
                json.dumps({"type": "publish", "id": index, "channel": "news", "data": text})
            )
        answers = [await next_envelope(alice) for _ in range(3)]
        assert [a["type"] for a in answers] == ["published", "error", "published"]
        assert answers[1] == {
            "type": "error",
            "id": 1,
            "code": "forbidden",
            "message": "publish to 'news' refused",
        }
        assert [await asyncio.wait_for(listener.recv(), 5) for _ in range(2)] == [
            "fine",
            "fine again",
        ]
        await raw.send("spam from a raw socket")
        with pytest.raises(ConnectionClosedError):
            while True:  # it has the two messages above to read first
                await asyncio.wait_for(raw.recv(), 5)
        assert (raw.close_code, raw.close_reason) == (4101, "publish to 'news' refused")
        # The server's own publishes are not the client's: no handler runs for them.
        await chat.hub.publish("news", "spam, by the server")
        assert await asyncio.wait_for(listener.recv(), 5) == "spam, by the server"
    await alice.close()


async def test_messages_reach_the_message_handler_which_publishes_and_sends(
    app: tuple[ChatApp, str],
) -> None:
    _, url = app
    alice = await envelope(url, "alice")
    welcome = await next_envelope(alice)
    assert welcome["type"] == "welcome"
    start = welcome["inbox"]
    assert isinstance(start, dict) and start["offset"] == 0
    async with connect(url + "/ws/relay") as listener:
        await alice.send(json.dumps({"type": "send", "data": "hi"}))
        assert await asyncio.wait_for(listener.recv(), 5) == "alice: 'hi'"
        got = {"type": "message", "epoch": start["epoch"], "offset": 1, "data": "got it"}
        assert await next_envelope(alice) == got
    await alice.close()


async def test_the_disconnect_handler_runs_once_with_the_close_code(
    app: tuple[ChatApp, str],
) -> None:
    chat, url = app
    alice = await envelope(url, "alice")
    assert (await next_envelope(alice))["type"] == "welcome"
    await alice.close(code=4321)
    assert await asyncio.wait_for(chat.disconnected.get(), 5) == ("alice", 4321)
    assert chat.hub.sessions == {}


async def test_publishing_from_python_reaches_websocket_subscribers(
    app: tuple[ChatApp, str],
) -> None:
    chat, url = app
    async with connect(url + "/ws/news") as subscriber:
        message = await chat.hub.publish("news", b"\x01\x02")
        assert message.offset == 1
        assert await asyncio.wait_for(subscriber.recv(), 5) == b"\x01\x02"
