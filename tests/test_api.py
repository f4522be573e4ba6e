"""`pushwire.api`, the HTTP API's client, against real `pushwire serve` processes: the sync
client from plain threads, the async one on the event loop; retries with one idempotency key
across a connection cut mid-request (tests/integration/cut_proxy.py) publish once; a wrong
API key is a clear error; the server's presence, history and disconnect calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest

from pushwire.api import AsyncClient, Client, HistoryMessage
from pushwire.client import Client as Subscriber
from pushwire.client import ClientClosed, Message, connect
from pushwire.errors import ApiKeyRefused, ApiRefused, ApiUnavailable
from tests.integration.cut_proxy import CutProxy
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT = 20.0
API_KEY = "test-api-key-0123456789"
SECRET = "test-jwt-secret-0123456789-0123456789"
T = TypeVar("T")


def in_plain_thread(call: Callable[[], T]) -> T:
    """Run `call` in a new thread (no event loop there), as a Django view or a worker would."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT * 3)
    assert not thread.is_alive(), "the call did not return"
    if errors:
        raise errors[0]
    return results[0]


async def threaded(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(in_plain_thread, call)


async def next_text(subscriber: Subscriber) -> str:
    item = await asyncio.wait_for(subscriber.recv(), WAIT)
    assert isinstance(item, Message), f"expected a message, got {item}"
    assert isinstance(item.data, str)
    return item.data


@pytest.fixture
async def proxies() -> AsyncIterator[list[CutProxy]]:
    made: list[CutProxy] = []
    yield made
    for proxy in made:
        await proxy.stop()


async def cut_proxy_to(server: ServerProcess, proxies: list[CutProxy]) -> CutProxy:
    proxy = CutProxy(server.host, server.port)
    await proxy.start()
    proxies.append(proxy)
    return proxy


# -- the calls -----------------------------------------------------------------------------


async def test_the_sync_client_publishes_sends_and_reads_from_a_plain_thread(
    server: ServerProcess,
) -> None:
    async with connect(server.url("/pushwire"), user="alice", transports=["websocket"]) as alice:
        await alice.subscribe("room", presence=True)
        with Client(server.url("")) as api:
            published = await threaded(lambda: api.publish("room", "hi"))
            assert (published.channel, published.offset) == ("room", 1)
            assert await next_text(alice) == "hi"

            binary = await threaded(lambda: api.publish("room", b"\x00\xff"))
            sent = await threaded(lambda: api.send("alice", "direct"))
            assert (sent.user, sent.offset, sent.sessions) == ("alice", 1, 1)

            history = await threaded(lambda: api.history("room"))
            assert history.complete
            assert (history.epoch, history.offset) == (published.epoch, 2)
            assert history.messages == [
                HistoryMessage(published.epoch, 1, "hi"),
                HistoryMessage(published.epoch, 2, b"\x00\xff"),
            ]
            after = await threaded(lambda: api.history("room", since=(binary.epoch, 1)))
            assert [message.offset for message in after.messages] == [2]

            presence = await threaded(lambda: api.presence("room"))
            assert presence.count == 1
            assert [member["user"] for member in presence.members] == ["alice"]
            assert not presence.truncated


async def test_the_async_client_publishes_sends_and_reads(server: ServerProcess) -> None:
    async with (
        connect(server.url("/pushwire"), user="bob", transports=["websocket"]) as bob,
        AsyncClient(server.url("")) as api,
    ):
        await bob.subscribe("news", presence=True)
        published = await api.publish("news", "hello")
        assert published.offset == 1
        assert await next_text(bob) == "hello"
        sent = await api.send("bob", "to bob")
        assert sent.sessions == 1
        assert await next_text(bob) == "to bob"
        assert [m.data for m in (await api.history("news")).messages] == ["hello"]
        presence = await api.presence("news")
        assert [member["user"] for member in presence.members] == ["bob"]


async def test_disconnect_closes_every_session_of_the_user_for_good(server: ServerProcess) -> None:
    url = server.url("/pushwire")
    async with (
        connect(url, user="carol", transports=["websocket"]) as first,
        connect(url, user="carol", transports=["longpoll"]) as second,
        connect(url, user="dave", transports=["websocket"]) as other,
        AsyncClient(server.url("")) as api,
    ):
        disconnected = await api.disconnect("carol")
        assert (disconnected.user, disconnected.sessions) == ("carol", 2)
        for client in (first, second):
            with pytest.raises(ClientClosed) as closed:
                await asyncio.wait_for(client.recv(), WAIT)
            assert (closed.value.code, closed.value.reason) == (4101, "disconnected by the server")
        await other.subscribe("still")
        await api.publish("still", "here")
        assert await next_text(other) == "here"
        assert (await api.disconnect("carol")).sessions == 0


async def test_disconnect_is_refused_with_a_broker_that_spans_processes(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    node = await asyncio.to_thread(
        server_factory, "--broker", f"redis://127.0.0.1:{redis_server.port}/0"
    )
    async with AsyncClient(node.url("")) as api:
        with pytest.raises(ApiRefused) as refused:
            await api.disconnect("carol")
    assert refused.value.status == 501
    assert str(refused.value) == (
        "501 disconnect reaches one process only, and this broker spans several: "
        "not available with --broker redis:// yet"
    )


# -- retries -------------------------------------------------------------------------------


async def test_a_publish_whose_answer_was_cut_is_retried_with_its_key_and_published_once(
    server: ServerProcess, proxies: list[CutProxy]
) -> None:
    proxy = await cut_proxy_to(server, proxies)
    retried: list[str] = []
    url = f"http://127.0.0.1:{proxy.port}"
    async with connect(server.url("/pushwire"), transports=["websocket"]) as subscriber:
        await subscriber.subscribe("orders")

        proxy.lose_answer_to(b"order-1")  # the sync client, from a plain thread
        with Client(url, backoff=0.01, on_retry=lambda problem, _: retried.append(problem)) as api:
            first = await threaded(lambda: api.publish("orders", "order-1"))
        assert proxy.lost == 1
        assert len(retried) == 1
        assert first.offset == 1

        proxy.lose_answer_to(b"order-2")  # the async client
        async with AsyncClient(url, backoff=0.01) as api:
            second = await api.publish("orders", "order-2")
            assert proxy.lost == 2
            assert second.offset == 2
            third = await api.publish("orders", "order-3")
            assert third.offset == 3

        assert await next_text(subscriber) == "order-1"
        assert await next_text(subscriber) == "order-2"  # not a second order-1
        assert await next_text(subscriber) == "order-3"  # not a second order-2
    async with AsyncClient(server.url("")) as api:
        history = await api.history("orders")
    assert [message.data for message in history.messages] == ["order-1", "order-2", "order-3"]


async def test_the_same_idempotency_key_given_twice_publishes_once(server: ServerProcess) -> None:
    async with AsyncClient(server.url("")) as api:
        first = await api.publish("once", "a", idempotency_key="order-77")
        again = await api.publish("once", "a", idempotency_key="order-77")
        assert first == again
        assert len((await api.history("once")).messages) == 1


async def test_a_send_whose_answer_was_cut_is_not_retried(
    server: ServerProcess, proxies: list[CutProxy]
) -> None:
    """A direct message has no idempotency key: after the request may have arrived, the
    client says so instead of sending it twice."""
    proxy = await cut_proxy_to(server, proxies)
    async with connect(server.url("/pushwire"), user="erin", transports=["websocket"]) as erin:
        proxy.lose_answer_to(b"just once")
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", backoff=0.01) as api:
            with pytest.raises(ApiUnavailable) as unavailable:
                await api.send("erin", "just once")
        assert "may or may not have arrived (not retried: no idempotency key)" in str(
            unavailable.value
        )
        assert await next_text(erin) == "just once"
        async with AsyncClient(server.url("")) as api:
            await api.send("erin", "next")
        assert await next_text(erin) == "next"  # no second "just once" in between


async def test_a_server_that_is_not_there_is_given_up_after_the_retries(
    server: ServerProcess, proxies: list[CutProxy]
) -> None:
    proxy = await cut_proxy_to(server, proxies)
    await proxy.stop()  # nothing listens on its port any more
    async with AsyncClient(f"http://127.0.0.1:{proxy.port}", retries=2, backoff=0.01) as api:
        with pytest.raises(ApiUnavailable, match=r"\(gave up after 3 attempts\)$"):
            await api.publish("room", "x")


# -- refusals ------------------------------------------------------------------------------


def test_a_wrong_api_key_is_a_clear_error(server_factory: ServerFactory) -> None:
    secured = server_factory("--jwt-secret", SECRET, "--api-key", API_KEY)
    for key in ("wrong", None):
        with Client(secured.url(""), api_key=key) as api, pytest.raises(ApiKeyRefused) as refused:
            api.publish("room", "x")
        assert refused.value.status == 401
        assert str(refused.value) == "401 missing or wrong API key (Authorization: Bearer <key>)"
    with Client(secured.url(""), api_key=API_KEY) as api:
        assert api.publish("room", "x").offset == 1
        assert api.presence("room").count == 0
    with Client(secured.url(""), api_key="wrong") as api, pytest.raises(ApiKeyRefused):
        api.history("room")


def test_a_server_with_tokens_and_no_api_key_refuses_every_call(
    server_factory: ServerFactory,
) -> None:
    closed = server_factory("--jwt-secret", SECRET)
    with Client(closed.url(""), api_key="anything") as api, pytest.raises(ApiKeyRefused) as off:
        api.disconnect("alice")
    assert str(off.value) == "403 the HTTP API is off: the server has no API key"


def test_a_refusal_carries_the_servers_reason_and_is_not_retried(server: ServerProcess) -> None:
    retried: list[str] = []
    with Client(server.url(""), on_retry=lambda problem, _: retried.append(problem)) as api:
        with pytest.raises(ApiRefused) as refused:
            api.publish("bad name", "x")
        assert str(refused.value) == "400 invalid channel name 'bad name'"
        with pytest.raises(ApiRefused) as bad_since:
            api.history("room", since=("e1", -1))
        assert str(bad_since.value) == (
            "400 since must be EPOCH:OFFSET, as a publish answer gives them"
        )
    assert retried == []


def test_a_url_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="url must start with http:// or https://"):
        Client("ws://127.0.0.1:8000")
