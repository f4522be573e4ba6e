"""Presence across pushwire processes on one real redis-server: everyone sees everyone, with
the info the connect handler attached; a node killed without goodbye has its members expire."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from pushwire.client import Client, Join, Leave, PresenceEvents, connect
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory

pytestmark = pytest.mark.integration

#: Short, so that expiry is quick to test: entries refreshed every second, gone after 3 s.
TTL = 3.0


async def next_event(events: PresenceEvents, timeout: float = 10.0) -> Join | Leave:
    return await asyncio.wait_for(anext(events), timeout)


async def test_members_on_every_node_are_seen_from_every_node_with_their_info(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    nodes = [
        server_factory("--broker", redis_server.url, "--set", f"presence_ttl={TTL}")
        for _ in range(3)
    ]
    # One person per node, each over another transport; bob has a second tab on node 0.
    people = [("ann", 0, "websocket"), ("bob", 1, "sse"), ("cat", 2, "longpoll")]
    clients: list[Client] = []
    for user, node, transport in people:
        client = await connect(nodes[node].url("/pushwire"), user=user, transports=[transport])
        clients.append(client)
        await client.subscribe("room", presence=True)
    ann, _bob, cat = clients
    try:
        for client in clients:
            presence = await client.wait_presence("room", 3, timeout=10)
            assert presence.users == ["ann", "bob", "cat"]
            info = {m.user: m.info for m in presence.members.values()}
            assert info == {
                "ann": {"via": "websocket"},
                "bob": {"via": "sse"},
                "cat": {"via": "longpoll"},
            }

        watching = [client.presence_events() for client in clients]
        async with connect(nodes[0].url("/pushwire"), user="bob") as second_tab:
            await second_tab.subscribe("room")
            for events in watching:
                joined = await next_event(events)
                assert isinstance(joined, Join)
                assert (joined.member.user, joined.count) == ("bob", 4)
            tabs = [m for m in ann.presence["room"].members.values() if m.user == "bob"]
            assert len(tabs) == 2 and tabs[0].member != tabs[1].member  # two sessions
            await second_tab.unsubscribe("room")
            for events in watching:
                left = await next_event(events)
                assert isinstance(left, Leave)
                assert (left.member, left.count) == (joined.member, 3)

        # On demand, from any node: the same members.
        asked = await cat.fetch_presence("room")
        assert (asked.count, asked.users) == (3, ["ann", "bob", "cat"])
    finally:
        for client in clients:
            await client.close()


async def test_a_node_killed_without_goodbye_has_its_members_expire_with_leaves(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    args = ("--broker", redis_server.url, "--set", f"presence_ttl={TTL}")
    first, second, doomed = (server_factory(*args) for _ in range(3))
    ann = await connect(first.url("/pushwire"), user="ann", transports=["websocket"])
    bob = await connect(second.url("/pushwire"), user="bob", transports=["websocket"])
    # The doomed node's clients do not come back anywhere: their entries must expire.
    cat = await connect(
        doomed.url("/pushwire"), user="cat", transports=["websocket"], reconnect=False
    )
    dan = await connect(doomed.url("/pushwire"), user="dan", transports=["stream"], reconnect=False)
    try:
        for client in (ann, bob, cat, dan):
            await client.subscribe("room", presence=True)
        for client in (ann, bob):
            await client.wait_presence("room", 4, timeout=10)
        events = [ann.presence_events(), bob.presence_events()]

        # Alive for longer than the TTL: the doomed node keeps refreshing its members.
        await asyncio.sleep(TTL * 1.5)
        assert ann.presence["room"].count == 4

        killed = time.monotonic()
        doomed.stop(signal.SIGKILL)  # no goodbye: its members just stop being refreshed
        for stream in events:
            gone = [await next_event(stream, timeout=TTL * 3) for _ in range(2)]
            assert all(isinstance(event, Leave) for event in gone)
            assert sorted(event.member.user or "" for event in gone) == ["cat", "dan"]
            assert sorted(event.count for event in gone) == [2, 3]
        elapsed = time.monotonic() - killed
        # An entry lives TTL after its last refresh (at most TTL/3 before the kill), and
        # the living nodes sweep every TTL/3: gone within 4/3 TTL, plus a little slack.
        assert elapsed < TTL * 4 / 3 + 1.5, elapsed
        for client in (ann, bob):
            presence = await client.wait_presence("room", 2, timeout=5)
            assert presence.users == ["ann", "bob"]

        # A newcomer reads the members from Redis: the dead node's are not among them.
        async with connect(second.url("/pushwire"), user="eve") as eve:
            await eve.subscribe("room", presence=True)
            assert eve.presence["room"].users == ["ann", "bob", "eve"]
            assert eve.presence["room"].count == 3
    finally:
        for client in (ann, bob, cat, dan):
            await client.close()


async def test_a_node_that_stops_says_goodbye_at_once(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    # A long TTL: the leaves cannot come from expiry.
    args = ("--broker", redis_server.url, "--set", "presence_ttl=600")
    staying, leaving = server_factory(*args), server_factory(*args)
    async with (
        connect(staying.url("/pushwire"), user="ann") as ann,
        connect(leaving.url("/pushwire"), user="bob", reconnect=False) as bob,
    ):
        await ann.subscribe("room", presence=True)
        await bob.subscribe("room")
        await ann.wait_presence("room", 2, timeout=10)
        events = ann.presence_events()
        assert leaving.stop(signal.SIGTERM) == 0
        left = await next_event(events, timeout=10)
        assert isinstance(left, Leave) and left.member.user == "bob" and left.count == 1
