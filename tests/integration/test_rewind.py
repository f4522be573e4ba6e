"""`subscribe` with `rewind`: the channel's last N messages from history first, then live
ones, with a `gap` for the part of those N that history no longer holds; on the in-memory
broker and on Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import PUSHWIRE_V1
from tests.integration.scaleout_helpers import publish_http
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

WAIT = 10.0


def publish(server: ServerProcess, channel: str, first: int, last: int) -> None:
    for index in range(first, last + 1):
        status, body = publish_http(server, channel, f"m{index}".encode())
        assert status == 200, body


async def subscribe(server: ServerProcess, fields: dict[str, Any]) -> list[str]:
    """Subscribe to "room" with `fields`, publish "live" once subscribed, and return what
    arrived up to it: `gap A-B` and the messages' data."""
    ws: ClientConnection = await connect(server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1)
    try:
        await ws.send(json.dumps({"type": "hello", "user": "reader"}))
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": "room", **fields}))
        got: list[str] = []
        async with asyncio.timeout(WAIT):
            while not got or got[-1] != "live":
                envelope = json.loads(await ws.recv())
                kind = envelope["type"]
                if kind == "subscribed":
                    await asyncio.to_thread(publish_http, server, "room", b"live")
                elif kind == "error":
                    return [f"error {envelope['code']}: {envelope['message']}"]
                elif kind == "gap":
                    got.append(f"gap {envelope['from']['offset']}-{envelope['to']['offset']}")
                elif kind == "message":
                    got.append(envelope["data"])
        return got
    finally:
        await ws.close()


async def check_rewind(server: ServerProcess) -> None:
    # An empty channel: nothing to rewind to, and no gap.
    assert await subscribe(server, {"rewind": 50}) == ["live"]
    publish(server, "room", 1, 9)  # offsets 2..10 ("live" was 1); history keeps 6: 5..10
    assert await subscribe(server, {"rewind": 3}) == ["m7", "m8", "m9", "live"]
    # 8 back from offset 11 is after offset 3; history starts at 6: offsets 4 and 5 are lost.
    assert await subscribe(server, {"rewind": 8}) == [
        "gap 3-5",
        "m5",
        "m6",
        "m7",
        "m8",
        "m9",
        "live",
    ]
    assert await subscribe(server, {"rewind": 0}) == ["live"]


async def test_rewind_sends_the_last_messages_then_live_ones_in_memory(
    server_factory: ServerFactory,
) -> None:
    await check_rewind(server_factory("--set", "history_size=6"))


async def test_rewind_sends_the_last_messages_then_live_ones_in_redis(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    await check_rewind(server_factory("--set", "history_size=6", "--broker", redis_server.url))


async def test_since_wins_over_rewind_and_a_bad_rewind_is_refused(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    status, body = publish_http(server, "room", b"m1")
    assert status == 200
    epoch = json.loads(body)["epoch"]
    publish(server, "room", 2, 3)
    since = {"epoch": epoch, "offset": 2}
    assert await subscribe(server, {"since": since, "rewind": 3}) == ["m3", "live"]
    for bad in (-1, "3", True, 2**63):
        assert await subscribe(server, {"rewind": bad}) == [
            f"error bad_request: rewind must be a whole number from 0 to {2**63 - 1}, not {bad!r}"
        ]
