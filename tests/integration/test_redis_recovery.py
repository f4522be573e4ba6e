"""A Redis that keeps its data across a restart: nodes recover what they missed, no gap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushwire.client import Gap, Message, connect
from tests.integration.scaleout_helpers import publish_http
from tests.redis_helpers import RedisServer, running_redis
from tests.servers import ServerFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path, persistent=True) as server:
        yield server


async def test_after_a_restart_with_persistence_nodes_replay_what_they_missed(
    server_factory: ServerFactory, persistent_redis: RedisServer
) -> None:
    """Publishes resume on one node before the other node's subscription is back: those
    messages reach the second node's clients only through recovery from history (same
    epoch, so no gap). Every accepted message arrives once, in order, on both nodes."""
    publisher_node = server_factory("--broker", persistent_redis.url)
    # The other node waits at least 1 s before resubscribing after the restart, so the
    # messages published meanwhile can reach its clients only through recovery.
    slow_back = ("--set", "broker_reconnect_min=2", "--set", "broker_reconnect_max=4")
    other_node = server_factory("--broker", persistent_redis.url, *slow_back)
    loop = asyncio.get_running_loop()
    async with (
        connect(publisher_node.url("/pushwire"), transports=["websocket"]) as near,
        connect(other_node.url("/pushwire"), transports=["websocket"]) as far,
    ):
        for client in (near, far):
            await client.subscribe("ledger")
        accepted: list[str] = []

        async def publish(text: str) -> bool:
            status, _ = await asyncio.to_thread(
                publish_http, publisher_node, "ledger", text.encode()
            )
            if status == 200:
                accepted.append(text)
            else:
                assert status == 503, status  # Redis down: refused, clearly, and not kept
            return status == 200

        for i in range(20):
            assert await publish(f"before {i}")
        persistent_redis.stop()
        assert not await publish("while down")
        persistent_redis.start()
        # Publish as soon as Redis answers: the other node is still waiting out its
        # reconnection backoff, so these miss its live subscription.
        deadline = loop.time() + 20
        sent_after = 0
        while sent_after < 50:
            assert loop.time() < deadline, "publishing never came back"
            if await publish(f"after {sent_after}"):
                sent_after += 1
            else:
                await asyncio.sleep(0.01)

        for client in (near, far):
            got: list[str] = []
            while len(got) < len(accepted):
                item = await asyncio.wait_for(client.recv(), 20)
                assert not isinstance(item, Gap), f"a gap although Redis kept history: {item}"
                assert isinstance(item, Message)
                assert isinstance(item.data, str)
                got.append(item.data)
            assert got == accepted  # once each, in publish order
