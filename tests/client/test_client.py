"""The Python client against a real server, on every transport, through drops and switches."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect as ws_connect

from pushwire.client import (
    ClientClosed,
    Gap,
    Join,
    Leave,
    Message,
    RequestFailed,
    RetryPolicy,
    connect,
)
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import Proxy

pytestmark = pytest.mark.integration

HTTP_TRANSPORTS = ("websocket", "sse", "stream", "longpoll", "polling")


@pytest.fixture
async def proxy(server: ServerProcess) -> AsyncIterator[Proxy]:
    instance = Proxy((server.host, server.port))
    await instance.start()
    yield instance
    await instance.stop()


def post(server: ServerProcess, path: str, body: bytes) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", path, body=body)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    conn.close()


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_a_thousand_channel_messages_in_order_none_missing_none_doubled(
    server: ServerProcess, transport: str
) -> None:
    url = server.url("/pushwire")
    async with (
        connect(url, transports=[transport], poll_interval=0.02) as reader,
        connect(url, transports=["websocket"]) as publisher,
    ):
        assert reader.transport == transport
        await reader.subscribe("feed")
        sent: list[str | bytes] = [f"m{i}" if i % 7 else bytes([i % 256]) for i in range(1000)]
        for data in sent:
            await publisher.publish("feed", data)
        received = [await asyncio.wait_for(reader.recv(), 10) for _ in range(1000)]
    assert [m.data for m in received if isinstance(m, Message)] == sent
    offsets = [m.offset for m in received if isinstance(m, Message) and m.offset is not None]
    assert len(offsets) == 1000 and offsets == sorted(set(offsets))


async def test_tcp_carries_a_thousand_messages_too(server_factory: ServerFactory) -> None:
    server = server_factory("--tcp-port", "0")
    async with (
        connect(f"tcp://127.0.0.1:{server.tcp_port}") as reader,
        connect(server.url("/pushwire")) as publisher,
    ):
        assert reader.transport == "tcp"
        await reader.subscribe("feed")
        for i in range(1000):
            await publisher.publish("feed", f"m{i}")
        received = [await asyncio.wait_for(reader.recv(), 10) for _ in range(1000)]
    assert [m.data for m in received if isinstance(m, Message)] == [f"m{i}" for i in range(1000)]


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_echo_keeps_text_text_and_binary_binary(
    server: ServerProcess, transport: str
) -> None:
    async with connect(server.url("/echo"), transports=[transport], poll_interval=0.02) as client:
        await client.send("你好")
        await client.send(b"\x00\n\xff")
        first = await asyncio.wait_for(client.recv(), 5)
        second = await asyncio.wait_for(client.recv(), 5)
    assert isinstance(first, Message) and first.data == "你好" and first.offset is None
    assert isinstance(second, Message) and second.data == b"\x00\n\xff"


async def test_a_refused_request_raises_with_the_servers_code(server: ServerProcess) -> None:
    async with connect(server.url("/pushwire")) as client:
        with pytest.raises(RequestFailed) as failed:
            await client.subscribe("bad name!")
    assert failed.value.code == "bad_request"
    assert failed.value.message == "invalid channel name 'bad name!'"


async def test_raw_websocket_clients_and_the_python_client_share_a_channel(
    server: ServerProcess,
) -> None:
    async with (
        ws_connect(server.ws_url("/ws/lobby")) as raw,
        connect(server.url("/pushwire")) as client,
    ):
        await client.subscribe("lobby")
        await raw.send("from a plain WebSocket")
        message = await asyncio.wait_for(client.recv(), 5)
        assert isinstance(message, Message) and message.data == "from a plain WebSocket"
        await client.publish("lobby", b"\x01\x02")
        assert await asyncio.wait_for(raw.recv(), 5) == "from a plain WebSocket"
        assert await asyncio.wait_for(raw.recv(), 5) == b"\x01\x02"


async def test_presence_lists_the_members_and_their_joins_and_leaves(
    server: ServerProcess,
) -> None:
    async with (
        connect(server.url("/pushwire"), user="ann") as first,
        connect(server.url("/pushwire"), user="bob") as second,
    ):
        events = first.presence_events()
        await first.subscribe("room", presence=True)
        presence = first.presence["room"]  # known once subscribe returns
        assert (presence.count, presence.users, presence.truncated) == (1, ["ann"], False)
        await second.subscribe("room")
        joined = await asyncio.wait_for(anext(events), 5)
        assert isinstance(joined, Join) and joined.member.user == "bob" and joined.count == 2
        assert (await first.wait_presence("room", 2, timeout=5)).users == ["ann", "bob"]
        asked = await second.fetch_presence("room")  # on demand, without presence updates
        assert asked.count == 2 and asked.users == ["ann", "bob"]
        await second.unsubscribe("room")
        left = await asyncio.wait_for(anext(events), 5)
        assert isinstance(left, Leave) and left.member == joined.member and left.count == 1
        assert first.presence["room"].users == ["ann"]
        with pytest.raises(RequestFailed, match="not subscribed"):
            await second.fetch_presence("room")


async def test_cancelling_recv_at_any_moment_loses_no_message(server: ServerProcess) -> None:
    url = server.url("/pushwire")
    sent = [f"m{i}" for i in range(500)]
    async with connect(url) as reader, connect(url) as publisher:
        await reader.subscribe("feed")

        async def publish() -> None:
            for data in sent:
                await publisher.publish("feed", data)

        publishing = asyncio.ensure_future(publish())
        received: list[str | bytes] = []
        cancelled = 0
        deadline = asyncio.get_running_loop().time() + 20
        while len(received) < len(sent):
            assert asyncio.get_running_loop().time() < deadline, len(received)
            waiting = asyncio.ensure_future(reader.recv())
            # Cancel after 0 to 1 ms: before, during or after a message is handed over.
            await asyncio.wait({waiting}, timeout=(len(received) % 3) * 0.0005)
            waiting.cancel()
            try:
                message = await waiting  # done before the cancel took: its result stands
            except asyncio.CancelledError:
                cancelled += 1
                continue
            assert isinstance(message, Message)
            received.append(message.data)
        await asyncio.wait_for(publishing, 10)
    assert received == sent
    assert cancelled > 0


async def test_a_full_inbox_pauses_reading_and_drops_nothing(server: ServerProcess) -> None:
    url = server.url("/pushwire")
    sent = [f"m{i}" for i in range(300)]
    # One attempt: retried, the publish would outlast the server's ping timeout (the reader
    # answers no ping while it takes nothing in) and end `disconnected` instead.
    async with (
        connect(url, max_queue=4, request_timeout=2, retry=RetryPolicy(attempts=1)) as reader,
        connect(url) as publisher,
    ):
        await reader.subscribe("feed")
        for data in sent:
            await publisher.publish("feed", data)
        # The answer comes behind the 300 messages, which the reader stopped taking in.
        with pytest.raises(RequestFailed) as failed:
            await reader.publish("feed", "own")
        assert failed.value.code == "timeout"
        received = [await asyncio.wait_for(reader.recv(), 10) for _ in range(301)]
    assert [m.data for m in received if isinstance(m, Message)] == [*sent, "own"]


async def test_a_stop_close_code_ends_the_client(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "max_message=1000")
    async with connect(server.url("/echo"), reconnect_delay=0.01) as client:
        await client.send("x" * 200_000)
        with pytest.raises(ClientClosed) as closed:
            await asyncio.wait_for(client.recv(), 10)
        assert closed.value.code == 1009
        assert client.reconnections == 0
        with pytest.raises(ClientClosed):
            await client.recv()  # and every later call
        assert [m async for m in client] == []


async def test_the_client_gives_up_after_max_reconnect_attempts(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    async with connect(
        server.url("/pushwire"),
        reconnect_delay=0.01,
        reconnect_delay_max=0.02,
        max_reconnect_attempts=3,
        connect_timeout=2,
    ) as client:
        await client.subscribe("room")
        # SIGTERM: 1001 "going away", and nobody comes back on that port.
        await asyncio.to_thread(server.stop)
        with pytest.raises(ClientClosed) as closed:
            await asyncio.wait_for(client.recv(), 20)
    assert closed.value.code == 1001
    assert client.reconnections == 0


async def test_a_drop_right_after_subscribing_repeats_nothing(
    server: ServerProcess, proxy: Proxy
) -> None:
    """Messages that arrive in the same read as `subscribed` are taken in before
    `subscribe()` returns; the position the client resumes from must count them."""
    url = f"http://127.0.0.1:{proxy.port}/pushwire"
    async with (
        connect(url, transports=["websocket"], reconnect_delay=0.01) as reader,
        connect(server.url("/pushwire")) as publisher,
    ):
        await publisher.subscribe("busy", presence=True)
        proxy.holding = True
        subscribing = asyncio.ensure_future(reader.subscribe("busy"))
        await publisher.wait_presence("busy", 2, timeout=5)  # the server has subscribed it
        for i in range(5):
            await publisher.publish("busy", f"m{i}")
        await proxy.wait_held(b'"m4"', timeout=5)
        proxy.release()  # `subscribed` and m0..m4 arrive together
        await asyncio.wait_for(subscribing, 5)
        proxy.cut()  # the reader resumes from the position it has now
        await reader.wait_reconnected(10)
        await publisher.publish("busy", "end")
        received: list[str | bytes] = []
        while "end" not in received:
            item = await asyncio.wait_for(reader.recv(), 10)
            assert isinstance(item, Message), item
            received.append(item.data)
    assert received == ["m0", "m1", "m2", "m3", "m4", "end"]


async def test_a_dropped_client_that_resumes_does_not_flap_and_learns_what_changed(
    server: ServerProcess, proxy: Proxy
) -> None:
    url = f"http://127.0.0.1:{proxy.port}/pushwire"
    async with (
        connect(server.url("/pushwire"), user="ann") as watcher,
        connect(url, user="flaky", transports=["websocket"], reconnect_delay=0.05) as flaky,
    ):
        await watcher.subscribe("room", presence=True)
        await flaky.subscribe("room", presence=True)
        await watcher.wait_presence("room", 2, timeout=5)
        seen_by_watcher = watcher.presence_events()
        seen_by_flaky = flaky.presence_events()
        proxy.refusing = True
        proxy.cut()  # flaky is away; its session waits for it
        async with connect(server.url("/pushwire"), user="cat") as cat:
            await cat.subscribe("room")
            joined = await asyncio.wait_for(anext(seen_by_watcher), 5)
            assert (type(joined), joined.member.user, joined.count) == (Join, "cat", 3)
            proxy.refusing = False
            await flaky.wait_reconnected(10)  # resumed: the same session
            # What happened while it was away comes out of the comparison of the lists.
            news = await asyncio.wait_for(anext(seen_by_flaky), 5)
            assert (type(news), news.member.user, news.count) == (Join, "cat", 3)
            assert flaky.presence["room"].users == ["ann", "cat", "flaky"]
        left = await asyncio.wait_for(anext(seen_by_watcher), 5)
        # The watcher saw cat come and go, and nothing of flaky's drop and return.
        assert (type(left), left.member.user, left.count) == (Leave, "cat", 2)
        assert watcher.presence["room"].users == ["ann", "flaky"]


async def test_no_transport_working_is_a_clear_error(server: ServerProcess) -> None:
    with pytest.raises(ClientClosed) as closed:
        await connect(f"http://127.0.0.1:{server.port}/nowhere", transports=["websocket"])
    assert closed.value.code == 1006
    assert "no transport worked" in closed.value.reason


async def drop_while_publishing(
    server: ServerProcess, proxy: Proxy, transports: list[str], *, block_websocket: bool = False
) -> tuple[list[Message], str]:
    """Subscribe through the proxy, cut every connection while 300 channel messages and 30
    direct messages are under way, and return everything the client received."""
    url = f"http://127.0.0.1:{proxy.port}/pushwire"
    async with connect(
        url,
        user="mobile",
        transports=transports,
        poll_interval=0.02,
        reconnect_delay=0.05,
        reconnect_delay_max=0.2,
    ) as client:
        await client.subscribe("feed")
        first_transport = client.transport

        async def publish() -> None:
            for i in range(300):
                await asyncio.to_thread(post, server, "/api/publish/feed", f"m{i}".encode())
                if i % 10 == 0:
                    await asyncio.to_thread(post, server, "/api/send/mobile", f"d{i}".encode())

        publisher = asyncio.ensure_future(publish())
        received: list[Message] = []
        while len(received) < 330:
            item = await asyncio.wait_for(client.recv(), 20)
            assert isinstance(item, Message), item
            received.append(item)
            if len(received) == 100:
                proxy.block_websocket = block_websocket
                proxy.cut()  # responses, chunks and frames in flight are lost in transit
        await publisher
        assert client.session is not None and client.expired == []
        return received, f"{first_transport}->{client.transport}"


def assert_exactly_once_in_order(received: list[Message]) -> None:
    channel = [m.data for m in received if m.channel == "feed"]
    direct = [m.data for m in received if m.channel is None]
    assert channel == [f"m{i}" for i in range(300)]
    assert direct == [f"d{i}" for i in range(0, 300, 10)]


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_a_drop_mid_stream_loses_nothing_and_repeats_nothing(
    server: ServerProcess, proxy: Proxy, transport: str
) -> None:
    received, path = await drop_while_publishing(server, proxy, [transport])
    assert path == f"{transport}->{transport}"
    assert_exactly_once_in_order(received)


async def test_a_drop_then_a_switch_from_websocket_to_longpoll_loses_nothing(
    server: ServerProcess, proxy: Proxy
) -> None:
    received, path = await drop_while_publishing(
        server, proxy, ["websocket", "longpoll"], block_websocket=True
    )
    assert path == "websocket->longpoll"
    assert_exactly_once_in_order(received)


def sessions(server: ServerProcess) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/api/stats")
    count: int = json.loads(conn.getresponse().read())["sessions"]
    conn.close()
    return count


async def test_an_expired_session_is_reported(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "session_grace=0.2")
    proxy = Proxy((server.host, server.port))
    await proxy.start()
    try:
        url = f"http://127.0.0.1:{proxy.port}/echo"
        async with connect(url, reconnect_delay=0.05, reconnect_delay_max=0.1) as client:
            old = client.session
            back = asyncio.ensure_future(client.wait_reconnected(20))
            proxy.refusing = True
            proxy.cut()
            # Kept away until the server has forgotten the session (session_grace).
            deadline = asyncio.get_running_loop().time() + 10
            while await asyncio.to_thread(sessions, server) != 0:
                assert asyncio.get_running_loop().time() < deadline
            proxy.refusing = False
            await back
            await client.send("after")
            message = await asyncio.wait_for(client.recv(), 10)
        assert isinstance(message, Message) and message.data == "after"
        assert client.expired == [old]
        assert client.session != old
    finally:
        await proxy.stop()


async def test_a_server_restart_reconnects_and_resubscribes(
    server_factory: ServerFactory,
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    first = server_factory("--port", port)
    async with connect(first.url("/pushwire"), reconnect_delay=0.1) as client:
        await client.subscribe("news")
        # SIGTERM: the client gets 1001, which means "come back".
        await asyncio.to_thread(first.stop)
        second = server_factory("--port", port)
        old = client.session
        async with connect(second.url("/pushwire")) as publisher:
            # The new process does not know the old session: the client opens a new one,
            # re-subscribes, and says so.
            await client.wait_reconnected(10)
            assert client.expired == [old]
            await publisher.publish("news", "after the restart")
            gap = await asyncio.wait_for(client.recv(), 10)
            message = await asyncio.wait_for(client.recv(), 10)
    # The new process's channel has a new epoch: history cannot vouch for what the old one
    # held after the client's position, and the client is told so before anything new.
    assert isinstance(gap, Gap) and gap.channel == "news" and gap.from_epoch != gap.to_epoch
    assert isinstance(message, Message) and message.data == "after the restart"


async def test_close_ends_the_client(server: ServerProcess) -> None:
    client = await connect(server.url("/echo"))
    await client.send("last")
    await asyncio.wait_for(client.recv(), 5)
    await client.close()
    with pytest.raises(ClientClosed) as closed:
        await client.recv()
    assert closed.value.code == 1000
    with pytest.raises(ClientClosed):
        await client.send("too late")


async def test_tcp_carries_a_thousand_text_and_binary_messages_across_a_drop(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--tcp-port", "0")
    assert server.tcp_port is not None
    proxy = Proxy((server.host, server.tcp_port))
    await proxy.start()
    sent: list[str | bytes] = [f"m{i}" if i % 3 else f"b{i}".encode() for i in range(1000)]
    try:
        async with (
            connect(f"tcp://127.0.0.1:{proxy.port}", reconnect_delay=0.05) as reader,
            connect(server.url("/pushwire")) as publisher,
        ):
            assert reader.transport == "tcp"
            await reader.subscribe("feed")

            async def publish() -> None:
                for data in sent:
                    await publisher.publish("feed", data)

            publishing = asyncio.ensure_future(publish())
            received: list[str | bytes] = []
            while len(received) < 1000:
                item = await asyncio.wait_for(reader.recv(), 20)
                assert isinstance(item, Message), item
                received.append(item.data)
                if len(received) == 400:
                    proxy.cut()  # frames in flight are lost in transit
            await publishing
            assert reader.reconnections == 1 and reader.expired == []
    finally:
        await proxy.stop()
    assert received == sent


@pytest.mark.parametrize("transport", ["sse", "stream", "longpoll", "polling"])
async def test_the_http_transports_open_with_a_post_and_name_the_session_in_a_header(
    server: ServerProcess, proxy: Proxy, transport: str
) -> None:
    url = f"http://127.0.0.1:{proxy.port}/pushwire"
    async with connect(url, user="hal", transports=[transport], poll_interval=0.02) as client:
        await client.subscribe("room")  # a send
        await client.publish("room", "hi")
        message = await asyncio.wait_for(client.recv(), 5)
        session = client.session
    assert isinstance(message, Message) and message.data == "hi"
    heads = re.findall(rb"(GET|POST) (\S+) HTTP/1\.1\r\n(.*?)\r\n\r\n", proxy.sent_up, re.S)
    method, target, _ = heads[0]
    assert (method, target) == (b"POST", f"/pushwire/{transport}".encode())  # the hello
    assert not [t for _, t, _ in heads if b"session=" in t or b"hello=" in t]
    later = heads[1:]
    assert [m for m, t, _ in later if t == b"/pushwire/send"]
    if transport in ("longpoll", "polling"):
        assert [
            t
            for m, t, _ in later
            if m == b"GET" and t.startswith(b"/pushwire/" + transport.encode())
        ]
    for _, _, fields in later:
        named = re.search(rb"\r\nPushwire-Session: ([^ \r]+) ([\w-]{22})\r\n", b"\r\n" + fields)
        assert named is not None and named[1].decode() == session, fields
