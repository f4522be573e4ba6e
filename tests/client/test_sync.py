"""The blocking client (`pushwire.client.sync`): from a plain thread with no event loop, on
every transport, against a real server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from pushwire.client import TRANSPORTS, ClientClosed, Message, RequestFailed, sync
from tests.servers import ServerFactory, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT = 15.0


def in_plain_thread(work: Callable[[], None]) -> None:
    """Run `work` in a new thread (no event loop there) and re-raise what it raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()  # a plain thread: no loop of its own
            work()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT * 6)
    assert not thread.is_alive(), "the thread did not finish"
    if failures:
        raise failures[0]


def url_for(server: ServerProcess, transport: str) -> str:
    return f"tcp://127.0.0.1:{server.tcp_port}" if transport == "tcp" else server.url("/pushwire")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_plain_thread_publishes_and_receives_on_every_transport(
    server_factory: ServerFactory, transport: str
) -> None:
    server = server_factory("--tcp-port", "0")

    def work() -> None:
        url = url_for(server, transport)
        with sync.connect(url, user="script", transports=[transport]) as client:
            assert client.transport == transport
            client.publish("room", "before")  # published before the subscription
            subscription = client.subscribe("room", rewind=1, timeout=WAIT)
            assert subscription.channel == "room"
            epoch, offset = client.publish("room", "hello", timeout=WAIT)
            client.publish("room", b"\x00\x01", timeout=WAIT)
            got = [client.recv(timeout=WAIT) for _ in range(3)]
            assert [(m.data, m.channel) for m in got if isinstance(m, Message)] == [
                ("before", "room"),
                ("hello", "room"),
                (b"\x00\x01", "room"),
            ]
            assert isinstance(got[1], Message) and (got[1].epoch, got[1].offset) == (epoch, offset)
            # Nothing more: recv times out, and iterating with a timeout ends.
            with pytest.raises(TimeoutError):
                client.recv(timeout=0.2)
            assert list(client.messages(timeout=0.2)) == []

    in_plain_thread(work)


def test_two_sync_clients_talk_and_see_each_other_and_a_closed_one_refuses_calls(
    server: ServerProcess,
) -> None:
    def work() -> None:
        url = server.url("/pushwire")
        with sync.connect(url, user="alice") as alice, sync.connect(url, user="bob") as bob:
            alice.subscribe("room", presence=True, timeout=WAIT)
            bob.subscribe("room", presence=True, timeout=WAIT)
            deadline = time.monotonic() + WAIT
            while (presence := alice.presence("room")) is None or presence.count < 2:
                assert time.monotonic() < deadline, presence
                time.sleep(0.05)  # polling the client's state: the sync face has no waiter
            assert sorted(m.user or "" for m in alice.fetch_presence("room").members.values()) == [
                "alice",
                "bob",
            ]
            bob.publish("room", "hi alice")
            for message in alice.messages(timeout=WAIT):
                assert isinstance(message, Message) and message.data == "hi alice"
                break
            else:
                raise AssertionError("alice got nothing")
        with pytest.raises(ClientClosed):
            alice.publish("room", "too late")
        alice.close()  # again: nothing

    in_plain_thread(work)


def test_a_sync_client_works_inside_a_running_event_loop_like_a_notebook_cell(
    server: ServerProcess,
) -> None:
    async def cell() -> str:
        with sync.connect(server.url("/echo")) as client:
            client.send("echoed")
            message = client.recv(timeout=WAIT)
            assert isinstance(message, Message)
            return str(message.data)

    assert asyncio.run(cell()) == "echoed"


def test_a_refused_publish_raises_in_the_calling_thread(server: ServerProcess) -> None:
    def work() -> None:
        with sync.connect(server.url("/pushwire")) as client:
            with pytest.raises(RequestFailed) as refused:
                client.publish("bad name!", "x", timeout=WAIT)
            assert refused.value.code == "bad_request"

    in_plain_thread(work)


def test_connect_raises_when_no_transport_can_connect(server_factory: ServerFactory) -> None:
    server = server_factory()
    url = server.url("/pushwire")
    server.stop()

    def work() -> None:
        with pytest.raises(ClientClosed):
            sync.connect(url, transports=["websocket"], reconnect=False, connect_timeout=2)

    in_plain_thread(work)
