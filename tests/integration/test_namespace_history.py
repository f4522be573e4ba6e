"""A namespace keeps the history its configuration says (`history_size`, `history_ttl`), on
the in-memory broker and on Redis: a client recovering from further back is told of the gap,
exactly, and gets what is kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import PUSHWIRE_V1
from tests.integration.scaleout_helpers import publish_http
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

NAMESPACES = """
[namespaces.brief]
subscribe = "anyone"
publish = "anyone"
history_size = 2

[namespaces.fleeting]
subscribe = "anyone"
publish = "anyone"
history_ttl = 1

[namespaces.plain]
subscribe = "anyone"
publish = "anyone"
"""
WAIT = 10.0


def serve(server_factory: ServerFactory, tmp_path: Path, *args: str) -> ServerProcess:
    config = tmp_path / "pushwire.toml"
    config.write_text(NAMESPACES)
    return server_factory("--config", str(config), "--set", "history_size=4", *args)


def publish(server: ServerProcess, channel: str, count: int) -> dict[str, Any]:
    """Publish 1..count; the first message's position."""
    first: dict[str, Any] = {}
    for index in range(1, count + 1):
        status, body = publish_http(server, channel, f"m{index}".encode())
        assert status == 200, body
        first = first or json.loads(body)
    return first


async def recover(server: ServerProcess, channel: str, epoch: str) -> list[dict[str, Any]]:
    """Subscribe from offset 0 of `epoch`: the gap (if any) and the messages recovered, up to
    the last published (its offset is in `subscribed`)."""
    ws: ClientConnection = await connect(server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1)
    try:
        await ws.send(json.dumps({"type": "hello", "user": "reader"}))
        since = {"epoch": epoch, "offset": 0}
        await ws.send(
            json.dumps({"type": "subscribe", "id": 1, "channel": channel, "since": since})
        )
        got: list[dict[str, Any]] = []
        last: int | None = None
        async with asyncio.timeout(WAIT):
            while last is None or not got or got[-1].get("offset") != last:
                envelope = json.loads(await ws.recv())
                if envelope["type"] == "subscribed":
                    last = envelope["offset"]
                elif envelope["type"] in ("gap", "message") and envelope.get("channel") == channel:
                    got.append(envelope)
        return got
    finally:
        await ws.close()


def summary(got: list[dict[str, Any]]) -> list[str]:
    return [
        f"gap {e['from']['offset']}-{e['to']['offset']}" if e["type"] == "gap" else e["data"]
        for e in got
    ]


async def check_sizes(server: ServerProcess) -> None:
    brief = publish(server, "brief:a", 5)
    assert summary(await recover(server, "brief:a", brief["epoch"])) == ["gap 0-3", "m4", "m5"]
    plain = publish(server, "plain:a", 5)  # the server's history_size=4
    assert summary(await recover(server, "plain:a", plain["epoch"])) == [
        "gap 0-1",
        "m2",
        "m3",
        "m4",
        "m5",
    ]


async def check_age(server: ServerProcess) -> None:
    fleeting = publish(server, "fleeting:a", 2)
    plain = publish(server, "plain:b", 2)
    await asyncio.sleep(1.5)  # what is checked is time passing: history_ttl = 1 s
    publish(server, "fleeting:a", 1)
    publish(server, "plain:b", 1)
    assert summary(await recover(server, "fleeting:a", fleeting["epoch"])) == ["gap 0-2", "m1"]
    assert summary(await recover(server, "plain:b", plain["epoch"])) == ["m1", "m2", "m1"]


async def test_a_namespace_keeps_its_history_size_in_memory(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    await check_sizes(serve(server_factory, tmp_path))


async def test_a_namespace_keeps_its_history_size_in_redis(
    server_factory: ServerFactory, tmp_path: Path, redis_server: RedisServer
) -> None:
    await check_sizes(serve(server_factory, tmp_path, "--broker", redis_server.url))


async def test_a_namespace_keeps_messages_its_history_ttl_in_memory(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    await check_age(serve(server_factory, tmp_path))


async def test_a_namespace_keeps_messages_its_history_ttl_in_redis(
    server_factory: ServerFactory, tmp_path: Path, redis_server: RedisServer
) -> None:
    await check_age(serve(server_factory, tmp_path, "--broker", redis_server.url))


def test_history_rules_are_checked_at_start(server_factory: ServerFactory, tmp_path: Path) -> None:
    for rule, message in (
        ("history_size = -1", "history_size must be a whole number of messages from 0 to 100000"),
        ("history_size = 100001", "from 0 to 100000"),
        ("history_size = 2.5", "whole number"),
        ("history_ttl = 0", "history_ttl must be seconds, over 0 and at most 604800"),
        ("history_ttl = 604801", "at most 604800"),
        ("history_ttl = true", "history_ttl must be seconds"),
    ):
        config = tmp_path / "bad.toml"
        config.write_text(f"[namespaces.x]\n{rule}\n")
        with pytest.raises(RuntimeError) as failed:
            server_factory("--config", str(config))
        assert message in str(failed.value), str(failed.value)
