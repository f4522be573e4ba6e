"""The Python client's streams stay live: one silent without ending (its link torn where
neither end sees it) is dropped after two heartbeats without a chunk, a ping sent after the
first, and resumed, nothing lost; one merely idle is kept (the ping's pong answers); a
reconnection whose welcome never comes is tried again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pushwire.client import Message, connect
from tests.chaos.proxy import FaultProxy
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT = 30.0  # generous: a busy machine; the check fires after 2 heartbeats (ping_interval) of 0.5 s


@pytest.mark.parametrize("transport", ["stream", "sse"])
async def test_a_stream_silent_mid_way_is_dropped_and_resumed_losing_nothing(
    server_factory: ServerFactory, transport: str
) -> None:
    server = server_factory("--set", "ping_interval=0.5")
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


async def test_a_tcp_connection_silent_mid_way_is_dropped_and_resumed_losing_nothing(
    server_factory: ServerFactory,
) -> None:
    """Before, the TCP transport read until the OS noticed the link was gone (minutes, or
    never through a proxy that keeps both ends open): the messages published meanwhile
    never came."""
    server = server_factory("--tcp-port", "0", "--set", "ping_interval=0.5")
    assert server.tcp_port is not None
    proxy = FaultProxy([(server.host, server.tcp_port)], seed=8)
    await proxy.start()
    try:
        async with (
            connect(
                proxy.url("", scheme="tcp"), reconnect_delay=0.05, reconnect_delay_max=0.2
            ) as reader,
            connect(server.url("/pushwire"), transports=["websocket"]) as publisher,
        ):
            await reader.subscribe("feed")
            sent = [f"m{i}" for i in range(40)]
            for data in sent[:20]:
                await publisher.publish("feed", data)
            received = [await asyncio.wait_for(reader.recv(), WAIT) for _ in range(20)]
            opened = proxy.counts["connections"]
            assert proxy.freeze() == 1
            for data in sent[20:]:
                await publisher.publish("feed", data)
            received += [await asyncio.wait_for(reader.recv(), WAIT) for _ in range(20)]
            assert reader.transport == "tcp"
            assert reader.reconnections >= 1
        assert [m.data for m in received if isinstance(m, Message)] == sent
        assert proxy.counts["connections"] > opened  # it came back on a new connection
    finally:
        await proxy.stop()


NODE_CLIENT = Path(__file__).resolve().parents[2] / "examples" / "tcp_client.mjs"


async def test_the_node_example_client_drops_a_silent_tcp_link_and_resumes(
    server_factory: ServerFactory,
) -> None:
    """examples/tcp_client.mjs keeps the same check (before, it waited for good)."""
    server = server_factory("--tcp-port", "0", "--set", "ping_interval=0.5")
    assert server.tcp_port is not None
    proxy = FaultProxy([(server.host, server.tcp_port)], seed=9)
    await proxy.start()
    node = await asyncio.create_subprocess_exec(
        *("node", str(NODE_CLIENT), "--port", str(proxy.port), "--channel", "feed"),
        *("--count", "40", "--ready", "1", "--timeout", "60000"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert node.stdout is not None
    try:

        async def lines(count: int) -> list[object]:
            assert node.stdout is not None
            read = [json.loads(await node.stdout.readline()) for _ in range(count)]
            return [line.get("data") for line in read]

        assert (await asyncio.wait_for(lines(1), WAIT)) == [None]  # {"ready": true, …}
        async with connect(server.url("/pushwire"), transports=["websocket"]) as publisher:
            sent = [f"m{i}" for i in range(40)]
            for data in sent[:20]:
                await publisher.publish("feed", data)
            received = await asyncio.wait_for(lines(20), WAIT)
            assert proxy.freeze() == 1
            for data in sent[20:]:
                await publisher.publish("feed", data)
            received += await asyncio.wait_for(lines(20), WAIT)
        assert received == sent
        assert await asyncio.wait_for(node.wait(), WAIT) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
        await proxy.stop()


async def held(proxy: FaultProxy, answers: int) -> None:
    """Until `answers` answers were held after their head (the proxy has no event for it)."""
    while proxy.counts["held"] < answers:
        await asyncio.sleep(0.05)


async def test_a_welcome_that_never_comes_on_a_reconnection_is_retried(
    server_factory: ServerFactory,
) -> None:
    """A reconnection whose answer stops after its head times out waiting for the welcome
    (connect_timeout); the client tries again, it does not stop reading."""
    server = server_factory()
    proxy = FaultProxy([(server.host, server.port)], seed=4)
    await proxy.start()
    try:
        async with (
            connect(
                proxy.url("/pushwire"),
                transports=["stream"],
                connect_timeout=0.5,
                reconnect_delay=0.05,
                reconnect_delay_max=0.2,
            ) as reader,
            connect(server.url("/pushwire"), transports=["websocket"]) as publisher,
        ):
            await reader.subscribe("feed")
            await publisher.publish("feed", "before")
            received = [await asyncio.wait_for(reader.recv(), WAIT)]
            proxy.hold_after_head = True
            proxy.reset_all()
            await asyncio.wait_for(held(proxy, 2), WAIT)  # two attempts got only a head
            proxy.hold_after_head = False
            await asyncio.wait_for(reader.wait_reconnected(), WAIT)
            await publisher.publish("feed", "after")
            received.append(await asyncio.wait_for(reader.recv(), WAIT))
        assert [m.data for m in received if isinstance(m, Message)] == ["before", "after"]
    finally:
        await proxy.stop()


@pytest.mark.parametrize("transport", ["stream", "sse"])
async def test_an_idle_stream_is_kept_alive_by_its_pings(
    server_factory: ServerFactory, transport: str
) -> None:
    """The welcome's heartbeat (ping_interval) is 1 s, the server's own stream heartbeats
    come every 20 s: the client's pings, answered on the stream, keep it from dropping."""
    server = server_factory("--set", "ping_interval=1")
    async with connect(server.url("/pushwire"), transports=[transport]) as reader:
        await reader.subscribe("feed")
        await asyncio.sleep(6)  # idle: six heartbeats with nothing but pongs
        assert reader.reconnections == 0
