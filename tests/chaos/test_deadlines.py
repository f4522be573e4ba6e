"""The Python client's HTTP requests have deadlines: a poll whose answer never comes (its
link frozen where neither end sees it, a proxy that holds it) is abandoned after the hold
the welcome announced and `poll_margin`, and the client resumes, losing nothing; an upload
(`POST E/send`) whose answer never comes is abandoned after `send_timeout` and retried as
one answered 503 is, published once; an upload cut after the server took it is not sent
again (it would arrive twice); a large upload on a slow uplink gets the time its size takes
at the server's slowest accepted rate besides."""

from __future__ import annotations

import asyncio

import pytest

from pushwire.client import Client, Message, RequestFailed, RetryPolicy, connect
from tests.chaos.proxy import FaultProxy
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT = 30.0  # generous: a busy machine; the deadlines here are 2 s and 1 s
QUICK_RETRY = RetryPolicy(delay=0.05, delay_max=0.2)


async def data_until(client: Client, last: str) -> list[object]:
    """The data of what `client` receives, up to and including `last`."""
    received: list[object] = []
    while last not in received:
        item = await asyncio.wait_for(client.recv(), WAIT)
        received.append(item.data if isinstance(item, Message) else item)
    return received


@pytest.mark.parametrize("transport", ["longpoll", "polling"])
async def test_a_poll_whose_answer_never_comes_is_abandoned_and_resumed_losing_nothing(
    server_factory: ServerFactory, transport: str
) -> None:
    """Before the deadline the client waited for the frozen poll forever: the messages
    published after the freeze never came."""
    server = server_factory("--set", "longpoll_timeout=1")
    proxy = FaultProxy([(server.host, server.port)], seed=5)
    await proxy.start()
    try:
        async with (
            connect(
                proxy.url("/pushwire"),
                transports=[transport],
                poll_margin=1,
                poll_interval=0.05,
                reconnect_delay=0.05,
                reconnect_delay_max=0.2,
            ) as reader,
            connect(server.url("/pushwire"), transports=["websocket"]) as publisher,
        ):
            await reader.subscribe("feed")
            sent = [f"m{i}" for i in range(40)]
            for data in sent[:20]:
                await publisher.publish("feed", data)
            received = await data_until(reader, sent[19])
            assert proxy.freeze() >= 1  # the poll (and the upload connection) go silent
            for data in [*sent[20:], "end"]:
                await publisher.publish("feed", data)
            received += await data_until(reader, "end")
            assert reader.transport == transport
            assert reader.reconnections >= 1  # the abandoned poll was a lost connection
        assert received == [*sent, "end"]  # each once, in order
    finally:
        await proxy.stop()


@pytest.mark.parametrize("transport", ["longpoll", "sse"])
async def test_a_publish_whose_upload_is_never_answered_is_retried_and_published_once(
    server_factory: ServerFactory, transport: str
) -> None:
    """The upload reaches the server (the message is stored), its answer never comes back.
    Before the deadline `publish()` waited forever (`request_timeout` bounds the answer,
    not the upload)."""
    server = server_factory()
    proxy = FaultProxy([(server.host, server.port)], seed=6)
    await proxy.start()
    try:
        async with (
            connect(
                proxy.url("/pushwire"), transports=[transport], send_timeout=1, retry=QUICK_RETRY
            ) as publisher,
            connect(server.url("/pushwire"), transports=["websocket"]) as reader,
        ):
            await reader.subscribe("feed")
            proxy.freeze_after = b'"type":"publish"'
            epoch, offset = await asyncio.wait_for(publisher.publish("feed", "once"), WAIT)
            assert proxy.counts["frozen"] == 1
            await asyncio.wait_for(publisher.publish("feed", "end"), WAIT)
            first = await asyncio.wait_for(reader.recv(), WAIT)
            rest = await data_until(reader, "end")
        assert isinstance(first, Message) and first.data == "once"
        assert (first.epoch, first.offset) == (epoch, offset)  # the retry got the first's answer
        assert rest == ["end"]  # not published twice
    finally:
        await proxy.stop()


async def test_an_app_message_whose_upload_was_cut_after_the_server_took_it_is_not_sent_twice(
    server_factory: ServerFactory,
) -> None:
    """`send()` is not retried once written. Before, a connection cut under the upload was
    tried once more on a fresh one: a message the server had taken arrived twice."""
    server = server_factory()
    proxy = FaultProxy([(server.host, server.port)], seed=7)
    await proxy.start()
    try:
        async with connect(proxy.url("/echo"), transports=["longpoll"]) as client:
            await client.send("first")  # the upload connection is open, kept alive
            received = await data_until(client, "first")
            proxy.cut_answer_after = b"cut after taken"
            with pytest.raises(RequestFailed) as failed:
                await asyncio.wait_for(client.send("cut after taken"), WAIT)
            assert failed.value.code == "disconnected"  # it may have arrived: it did
            await client.send("end")
            received += await data_until(client, "end")
        assert received == ["first", "cut after taken", "end"]
        assert proxy.counts["cut answers"] == 1
    finally:
        await proxy.stop()


async def test_an_upload_after_the_server_closed_its_idle_connection_goes_on_a_fresh_one(
    server_factory: ServerFactory,
) -> None:
    """A send is not tried again once written, so a connection the server closed while idle
    (`keepalive_timeout`) must be replaced before it is written to."""
    server = server_factory("--set", "keepalive_timeout=0.2")
    async with connect(server.url("/echo"), transports=["longpoll"]) as client:
        await client.send("before")
        received = await data_until(client, "before")
        # The server closes the idle upload connection meanwhile (no event to await here:
        # a missed close only makes the test pass without testing).
        await asyncio.sleep(3)
        await asyncio.wait_for(client.send("after"), WAIT)
        received += await data_until(client, "after")
    assert received == ["before", "after"]


async def test_a_large_upload_on_a_slow_uplink_is_not_abandoned_while_it_progresses(
    server_factory: ServerFactory,
) -> None:
    """96 KiB at 32 KiB/s take about 3 s, past `send_timeout` (1 s) but within the 6 s its
    size takes at the server's default `min_receive_rate` (16 KiB/s). Before, the whole
    upload was bounded by `send_timeout`: the send failed `disconnected` mid-way."""
    server = server_factory()
    proxy = FaultProxy([(server.host, server.port)], seed=9)
    await proxy.start()
    try:
        async with connect(proxy.url("/echo"), transports=["longpoll"], send_timeout=1.0) as client:
            await client.send("small")
            received = await data_until(client, "small")
            big = "x" * (96 * 1024)
            proxy.upload_rate = 32 * 1024
            await asyncio.wait_for(client.send(big), WAIT)
            proxy.upload_rate = None
            received += await data_until(client, big)
        assert received == ["small", big]
    finally:
        await proxy.stop()
