"""A stream that goes silent without ending (its link torn where neither end sees it) is
dropped by the Python client after two heartbeats without a byte, and resumed: nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from pushwire.client import Message, connect
from tests.chaos.proxy import FaultProxy
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT = 30.0  # generous: a busy machine; the check itself fires after 2 heartbeats of 0.5 s


@pytest.mark.parametrize("transport", ["stream", "sse"])
async def test_a_stream_silent_mid_way_is_dropped_and_resumed_losing_nothing(
    server_factory: ServerFactory, transport: str
) -> None:
    server = server_factory("--set", "heartbeat_interval=0.5")
    proxy = FaultProxy([(server.host, server.port)], seed=3)
    await proxy.start()
    try:
        async with (
            connect(proxy.url("/pushwire"), transports=[transport]) as reader,
            connect(server.url("/pushwire"), transports=["websocket"]) as publisher,
        ):
            await reader.subscribe("feed")
            sent = [f"m{i}" for i in range(40)]
            for data in sent[:20]:
                await publisher.publish("feed", data)
            received = [await asyncio.wait_for(reader.recv(), WAIT) for _ in range(20)]
            opened = proxy.counts["connections"]
            assert proxy.freeze() >= 1  # the stream (and its send connection) go silent
            for data in sent[20:]:
                await publisher.publish("feed", data)
            received += [await asyncio.wait_for(reader.recv(), WAIT) for _ in range(20)]
            assert reader.transport == transport
        assert [m.data for m in received if isinstance(m, Message)] == sent
        assert proxy.counts["connections"] > opened  # it came back on a new connection
    finally:
        await proxy.stop()
