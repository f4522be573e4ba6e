"""The subscription connection against a real redis-server: two brokers on one Redis play two
nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.redis_helpers import Node, numsub, publish_ok

pytestmark = pytest.mark.integration


async def test_one_redis_subscription_per_channel_per_process(
    nodes: Callable[..., Any], redis: Redis
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    for _ in range(3):
        await a.broker.subscribe("busy")
    await b.broker.subscribe("busy")
    assert await numsub(redis, "pushwire:{busy}") == 2
    await a.broker.unsubscribe("busy")
    assert await numsub(redis, "pushwire:{busy}") == 1

    await publish_ok(b.broker, "busy", "after a left")
    await b.received_count(1)
    assert a.received == []


async def test_a_channel_is_not_delivered_after_unsubscribe(nodes: Callable[..., Any]) -> None:
    a: Node = await nodes()
    await a.broker.subscribe("gone")
    await a.broker.subscribe("stays")
    await a.broker.unsubscribe("gone")
    await publish_ok(a.broker, "gone", "no")
    await publish_ok(a.broker, "stays", "yes")
    received = await a.received_count(1)
    assert [(m.channel, m.data) for m in received] == [("stays", "yes")]


async def test_a_killed_subscription_connection_is_resubscribed_and_reported(
    nodes: Callable[..., Any], redis: Redis
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    await b.broker.subscribe("room")
    await b.broker.subscribe("lobby")
    await redis.client_kill_filter(_type="pubsub")
    await b.until(lambda: b.resubscribed == [frozenset({"room", "lobby"})])
    assert await numsub(redis, "pushwire:{room}") == 1
    message = await publish_ok(a.broker, "room", "after the kill")
    assert await b.received_count(1) == [message]
