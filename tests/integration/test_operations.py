"""Operating a server (docs/operations.md): `/metrics` that moves with clients and publishes,
`/readyz` that follows the broker, JSON logs with no credential in them, and `--log-level` /
`--log-format` in every worker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect as ws_connect

from pushwire.client import Message, connect
from tests.metrics_helpers import eventually, scrape
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

WAIT = 20.0
SECRET = "the secret of the tokens of the operations tests"
API_KEY = "the-api-key-of-the-operations-tests"


async def get(server: ServerProcess, path: str) -> int:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return (await http.get(server.url(path))).status_code


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's log lines (every line but the `pushwire listening` ones), each parsed as
    JSON: a line that is not JSON fails the test."""
    lines = []
    for raw in list(server.output):
        text = raw.decode().strip()
        if text and not text.startswith("pushwire "):
            lines.append(json.loads(text))
    return lines


async def test_metrics_move_when_clients_connect_subscribe_and_publish(
    server: ServerProcess,
) -> None:
    before = await scrape(server)
    assert before["pushwire_subscriptions"] == 0
    assert before["pushwire_messages_published_total"] == 0
    assert before["pushwire_broker_up"] == 1
    assert "process_resident_memory_bytes" in before
    assert before["pushwire_stats_memory_budget"] > 0  # /api/stats' other counters, as gauges
    async with (
        connect(server.url("/pushwire"), transports=["websocket"]) as first,
        connect(server.url("/pushwire"), transports=["longpoll"]) as second,
    ):
        for client in (first, second):
            await client.subscribe("metrics-room")
        async with httpx.AsyncClient(timeout=WAIT) as http:
            answer = await http.post(server.url("/api/publish/metrics-room"), content=b"hello")
        assert answer.status_code == 200
        for client in (first, second):
            got = await asyncio.wait_for(client.recv(), WAIT)
            assert isinstance(got, Message) and got.data == "hello"
        during = await scrape(server)
    assert during['pushwire_sessions{transport="websocket"}'] == 1
    assert during['pushwire_sessions{transport="longpoll"}'] == 1
    assert during["pushwire_subscriptions"] == 2
    assert during["pushwire_channels"] == 1
    assert during["pushwire_messages_published_total"] == 1
    assert during["pushwire_published_bytes_total"] == len(b"hello")
    assert during["pushwire_deliveries_total"] == 2
    assert during["pushwire_delivered_bytes_total"] > 2 * len(b"hello")
    assert during["pushwire_connections_open"] > before["pushwire_connections_open"]
    assert (
        during["pushwire_connections_accepted_total"]
        > before["pushwire_connections_accepted_total"]
    )

    async def closed() -> bool:
        after = await scrape(server)
        return after.get('pushwire_connection_closes_total{code="1000"}', 0) >= 1

    await eventually(closed, "the clients' closes counted")
    after = await scrape(server)
    assert after["pushwire_subscriptions"] == 0


async def test_metrics_need_the_api_key_once_one_is_set(server_factory: ServerFactory) -> None:
    secured = server_factory("--jwt-secret", SECRET, "--api-key", API_KEY)
    assert await get(secured, "/metrics") == 401
    async with ws_connect(secured.ws_url("/ws/news?token=not-a-token")) as ws:
        await asyncio.wait_for(ws.wait_closed(), WAIT)  # refused: the token is no JWT
    samples = await scrape(secured, API_KEY)
    assert samples['pushwire_refusals_total{reason="Unauthorized"}'] >= 1


async def test_readyz_fails_while_redis_is_down_and_healthz_stays_up(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    node = server_factory(
        "--broker",
        redis_server.url,
        "--set",
        "broker_reconnect_min=0.05",
        "--set",
        "broker_reconnect_max=0.5",
    )
    assert await get(node, "/readyz") == 200
    redis_server.stop()

    async def not_ready() -> bool:
        return await get(node, "/readyz") == 503

    await eventually(not_ready, "/readyz 503 with Redis stopped")
    assert await get(node, "/healthz") == 200
    assert (await scrape(node))["pushwire_broker_up"] == 0
    redis_server.start()

    async def ready() -> bool:
        return await get(node, "/readyz") == 200

    await eventually(ready, "/readyz 200 with Redis back")
    samples = await scrape(node)
    assert samples["pushwire_broker_up"] == 1
    assert samples["pushwire_broker_reconnects_total"] >= 1


async def test_json_logs_tell_each_connection_and_request_without_the_token(
    server_factory: ServerFactory,
) -> None:
    secured = server_factory(
        "--jwt-secret", SECRET, "--log-format", "json", "--access-log", "--anonymous"
    )
    token = jwt.encode({"sub": "alice", "exp": time.time() + 300}, SECRET, "HS256")
    async with ws_connect(secured.ws_url(f"/ws/room?token={token}")) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hi"
    async with httpx.AsyncClient(timeout=WAIT) as http:
        await http.get(secured.url(f"/healthz?token={token}"))

    def logged() -> bool:
        events = [line.get("event") for line in json_lines(secured)]
        return "close" in events and events.count("http") >= 2

    await eventually(logged, "the close and access lines")
    lines = json_lines(secured)
    everything = b"".join(secured.output)
    assert token.encode() not in everything
    assert token.split(".")[2].encode() not in everything  # not even the signature
    opened = [line for line in lines if line.get("event") == "open"]
    closed = [line for line in lines if line.get("event") == "close"]
    assert opened[0]["user"] == "alice" and opened[0]["transport"] == "websocket"
    assert opened[0]["peer"].startswith("127.0.0.1:")
    assert closed[0]["user"] == "alice" and closed[0]["code"] == 1000
    assert closed[0]["duration"] >= 0
    requests = [line for line in lines if line.get("event") == "http"]
    assert {(line["path"], line["status"]) for line in requests} >= {
        ("/ws/room", 101),
        ("/healthz", 200),
    }
    assert all(line["query"] in ("", "token=***") for line in requests)
    assert not any("websockets" in line["logger"] for line in lines)


async def test_workers_log_at_the_level_and_in_the_format_asked(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """Each worker configures its logging from the settings (it is spawned: nothing of the
    parent's logging reaches it). With debug and json, each worker's start-up lines come as
    JSON; with warning, none of them comes at all."""
    verbose = server_factory(
        "--broker", redis_server.url, "--workers", "2", "--log-level", "debug",
        "--log-format", "json",
    )  # fmt: skip
    parent = verbose.process.pid

    def both_workers_logged() -> bool:
        pids = {
            line["pid"]
            for line in json_lines(verbose)
            if line["message"].startswith("max_connections")
        }
        return len(pids - {parent}) == 2

    await eventually(both_workers_logged, "each worker's start-up line, as JSON")
    # With warning: a refusal is logged (a warning) by whichever worker refused it; once
    # both workers have, each was up, and neither logged its info lines.
    quiet = server_factory(
        "--broker", redis_server.url, "--workers", "2", "--log-level", "warning",
        "--log-format", "json", "--jwt-secret", SECRET,
    )  # fmt: skip
    parent = quiet.process.pid

    async def both_workers_refused() -> bool:
        async with ws_connect(quiet.ws_url("/ws/news?token=not-a-token")) as ws:
            await asyncio.wait_for(ws.wait_closed(), WAIT)
        return len({line["pid"] for line in json_lines(quiet)} - {parent}) == 2

    await eventually(both_workers_refused, "a refusal logged by each worker")
    assert {line["level"] for line in json_lines(quiet)} == {"warning"}
