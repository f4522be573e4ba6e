"""The Python client backs off when the server says so (issue 15): HTTP 429, 503 with
`Retry-After`, an `error` `limit` / `rate_limited` with its `retry_after`, close 4029. It
waits at least what the server said (at most 60 s) before it tries again, by any transport,
and tells the app (`on_error`, a `Failure` `connect`). Against real servers with tight
limits; the waits asserted are lower bounds (a busy machine only makes them longer)."""

from __future__ import annotations

import asyncio
import http.client

import pytest

from pushwire.client import Client, ClientClosed, Failure, connect
from pushwire.client.retry import MAX_SERVER_BACKOFF, parse_retry_after
from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

WAIT = 30.0


class Backoffs:
    """The `Failure`s `connect` an `on_error` was given, each with when it came."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Failure]] = []
        self.changed = asyncio.Event()

    def __call__(self, failure: Failure) -> None:
        if failure.operation == "connect":
            self.seen.append((asyncio.get_running_loop().time(), failure))
            self.changed.set()

    async def wait_for(self, count: int) -> None:
        while len(self.seen) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), WAIT)


def poll_hello(server: ServerProcess) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/pushwire/polling", body=b'{"type":"hello"}')
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("60", 60.0),  # at the bound
        ("61", MAX_SERVER_BACKOFF),  # one over: capped
        ("86400", MAX_SERVER_BACKOFF),
        (4, 4.0),  # an `error`'s `retry_after`
        (2.5, 2.5),
    ],
)
def test_retry_after_is_read_as_delta_seconds_and_capped(value: object, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value",
    [None, "", "-1", "1.5", "+3", "²", "\uff11", "0x10", "Wed, 21 Oct 2015 07:28:00 GMT",
     "1" * 11, -2, float("nan"), float("inf"), True, [3], {"s": 3}],
)  # fmt: skip
def test_garbage_retry_after_is_ignored(value: object) -> None:
    assert parse_retry_after(value) is None


async def test_a_close_4029_is_waited_out_as_its_error_said(server_factory: ServerFactory) -> None:
    # The hello and one message fill the burst; the next is dropped with `error`
    # `rate_limited` and its `retry_after` (4 s: a token comes back every 4 s); the one
    # after that closes the connection with 4029.
    server = server_factory(
        "--set", "messages_per_second=0.25", "--set", "message_burst=2",
        "--set", "rate_limit_strikes=1",
    )  # fmt: skip
    backoffs = Backoffs()
    async with connect(server.url("/pushwire"), transports=["websocket"], on_error=backoffs) as c:
        for text in ("a", "b", "c"):
            await c.send(text)
        await backoffs.wait_for(1)
        reported, failure = backoffs.seen[0]
        assert (failure.code, failure.retry_after) == ("rate_limited", 4.0)
        await c.wait_reconnected(WAIT)
        assert asyncio.get_running_loop().time() - reported >= 4.0
        assert c.reconnections == 1


async def test_a_429_at_reconnection_is_waited_out_by_every_transport(
    server_factory: ServerFactory,
) -> None:
    # One handshake every 4 s from this address. The client's first message breaks its
    # session's rate: close 4029 (no error first: 1 s at least); its first attempt, a second
    # later, gets 429 with Retry-After: 3; it tries no other transport before then.
    server = server_factory(
        "--set", "handshakes_per_ip=0.25", "--set", "handshake_burst=1",
        "--set", "messages_per_second=0.25", "--set", "message_burst=1",
        "--set", "rate_limit_strikes=0",
    )  # fmt: skip
    backoffs = Backoffs()
    client = Client(server.url("/pushwire"), on_error=backoffs)  # every HTTP transport
    await client.open()
    try:
        await client.send("over")
        await backoffs.wait_for(2)
        (closed_at, closed), (refused_at, refused) = backoffs.seen[:2]
        assert (closed.code, closed.retry_after) == ("rate_limited", 1.0)
        assert refused_at - closed_at >= 1.0
        assert refused.code == "rate_limited" and "HTTP 429" in refused.message
        assert refused.retry_after is not None and refused.retry_after >= 1.0
        await client.wait_reconnected(WAIT)
        assert asyncio.get_running_loop().time() - refused_at >= refused.retry_after
        # Each refused attempt was one handshake: none by the other transports meanwhile.
        assert all(f.code == "rate_limited" for _, f in backoffs.seen)
        assert client.transport == "websocket"
    finally:
        await client.close()


@pytest.mark.parametrize("transport", ["websocket", "sse", "polling"])
async def test_a_first_connection_refused_with_429_says_how_long_to_wait(
    server_factory: ServerFactory, transport: str
) -> None:
    server = server_factory("--set", "handshakes_per_ip=0.1", "--set", "handshake_burst=1")
    assert poll_hello(server) == 200  # at the bound
    with pytest.raises(ClientClosed) as raised:  # one over
        await connect(server.url("/pushwire"), transports=[transport, "longpoll"])
    assert raised.value.code == 4029
    assert raised.value.retry_after is not None and 1.0 <= raised.value.retry_after <= 10.0


@pytest.mark.parametrize("transport", ["websocket", "stream", "longpoll"])
async def test_a_session_bound_answer_says_how_long_to_wait(
    server_factory: ServerFactory, transport: str
) -> None:
    # HTTP 503 + Retry-After: 5 (a new session over an HTTP transport), or `error` `limit`
    # with `retry_after` 5 and close 4029 (at a WebSocket's hello).
    server = server_factory("--set", "max_sessions_per_ip=1")
    assert poll_hello(server) == 200  # at the bound
    with pytest.raises(ClientClosed) as raised:  # one over
        await connect(server.url("/pushwire"), transports=[transport])
    assert (raised.value.code, raised.value.retry_after) == (4029, 5.0)
