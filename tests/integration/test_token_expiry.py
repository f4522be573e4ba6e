"""Tokens that expire, on every transport, against a real server with `jwt_leeway=0`:

- a client that refreshes its token stays connected, and keeps receiving, past the first
  token's expiry (the Python client's `token_refresh`);
- one that does not is closed with 4005 at the expiry (within a sweep of the server);
- a refresh with another user's token is refused (`unauthorized`) and the session expires at
  its old time; the client then comes back with a new token, to the same session;
- resuming a session whose token expired, with that token or with none, is refused with
  4005 (`token_expired`), with another user's token 4102; with a new token of its own user
  it resumes.

Python clients on websocket, sse, stream, longpoll, polling and tcp; clients written from
docs/protocol.md (tests/wire_clients.py) for the same and the iframe. pushwire.js in
Chromium: test_browser_tokens.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from pushwire.client import Client, ClientClosed, Message, connect
from pushwire.core.expiry import SWEEP_INTERVAL
from tests.helpers import PUSHWIRE_V1
from tests.proxy_backend import running_backend
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess, start_server
from tests.wire_clients import Poller, Streamer, TcpClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SECRET = "the secret of the tokens in these tests, long enough"
API_KEY = "the-api-key-of-the-token-tests"
#: Seconds a token lives in these tests.
LIFETIME = 2.0
#: Bound of every wait for something the server does.
WAIT = 10.0
#: How late past its token's expiry a connection may be closed: a sweep, and the time to
#: reach the client (the polling client asks every 0.1 s).
LATE = SWEEP_INTERVAL + 0.6
CLIENT_TRANSPORTS = ["websocket", "sse", "stream", "longpoll", "polling", "tcp"]
WIRE_TRANSPORTS = ["websocket", "sse", "stream", "iframe", "longpoll", "polling", "tcp"]


def token(user: str, lifetime: float = LIFETIME) -> tuple[str, float]:
    """A connection token for `user` and its `exp`."""
    expires = time.time() + lifetime
    return jwt.encode({"sub": user, "exp": expires}, SECRET, "HS256"), expires


@pytest.fixture(scope="module")
def secured() -> Iterator[ServerProcess]:
    """A server with JWT authentication, no leeway, an API key and a TCP port."""
    server = start_server(
        "--jwt-secret",
        SECRET,
        "--api-key",
        API_KEY,
        "--set",
        "jwt_leeway=0",
        "--tcp-port",
        "0",
    )
    yield server
    server.stop()


def url_of(server: ServerProcess, transport: str) -> str:
    if transport == "tcp":
        return f"tcp://{server.host}:{server.tcp_port}"
    return server.url("/pushwire")


def client_of(
    server: ServerProcess,
    transport: str,
    first: str,
    token_refresh: Callable[[], Awaitable[str]] | None = None,
) -> AbstractAsyncContextManager[Client]:
    """A Python client of /pushwire (or the TCP port) over `transport` alone, quick to poll
    and to reconnect."""
    return connect(
        url_of(server, transport),
        token=first,
        token_refresh=token_refresh,
        transports=[transport],
        poll_interval=0.1,
        reconnect_delay=0.05,
        reconnect_delay_max=0.2,
    )


def publish_as_server(server: ServerProcess, channel: str, text: str) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    conn.request(
        "POST",
        f"/api/publish/{channel}",
        body=text.encode(),
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200


# -- the Python client ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", CLIENT_TRANSPORTS)
async def test_a_client_that_refreshes_its_token_stays_connected_past_its_expiry(
    secured: ServerProcess, transport: str
) -> None:
    user, channel = f"fresh-{transport}", f"fresh-{transport}"
    first, first_expires = token(user)
    asked = asyncio.Event()

    async def fresh_token() -> str:
        asked.set()
        return token(user)[0]

    async with client_of(secured, transport, first, fresh_token) as client:
        assert client.expires == pytest.approx(first_expires)
        session = client.session
        await client.subscribe(channel)
        await asyncio.wait_for(asked.wait(), WAIT)
        # A connection still open after its first token's expiry and a sweep can only be
        # seen by waiting that long: no event says "not closed".
        await asyncio.sleep(first_expires + LATE - time.time())
        publish_as_server(secured, channel, "after the first token's expiry")
        message = await asyncio.wait_for(client.recv(), WAIT)
        assert isinstance(message, Message) and message.data == "after the first token's expiry"
        assert client.reconnections == 0 and client.session == session
        assert client.expires is not None and client.expires > first_expires + 1


@pytest.mark.parametrize("transport", CLIENT_TRANSPORTS)
async def test_a_client_without_a_refresh_is_closed_with_4005_when_its_token_expires(
    secured: ServerProcess, transport: str
) -> None:
    first, expires = token(f"stale-{transport}")
    async with client_of(secured, transport, first) as client:
        await client.subscribe(f"stale-{transport}")
        with pytest.raises(ClientClosed) as closed:
            await asyncio.wait_for(client.recv(), LIFETIME + WAIT)
        at = time.time()
    assert closed.value.code == 4005
    assert expires <= at <= expires + LATE
    assert client.reconnections == 0  # an expired token is not tried again


@pytest.mark.parametrize("transport", CLIENT_TRANSPORTS)
async def test_a_refresh_refused_leaves_the_old_expiry_and_the_client_comes_back_with_a_new_token(
    secured: ServerProcess, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = f"mixed-{transport}"
    first, expires = token(user)
    given: list[str] = []

    async def tokens() -> str:
        # First another user's token (a refresh the server refuses), then the user's own.
        given.append("mallory" if not given else user)
        return token(given[-1], 30)[0]

    caplog.set_level(logging.WARNING, "pushwire.client")
    async with client_of(secured, transport, first, tokens) as client:
        session = client.session
        await client.subscribe(user)
        await client.wait_reconnected(LIFETIME + WAIT)
        at = time.time()
        assert given == ["mallory", user]
        refused = "token refresh refused: unauthorized: the token is for another user than"
        assert refused in caplog.text
        # Closed at the old expiry, come back with the new token: the same session.
        assert expires <= at <= expires + LATE + 0.5
        assert client.session == session and client.user == user
        assert client.reconnections == 1
        assert client.expires is not None and client.expires > expires + 20
        publish_as_server(secured, user, "still subscribed")
        message = await asyncio.wait_for(client.recv(), WAIT)
        assert isinstance(message, Message) and message.data == "still subscribed"
        assert client.reconnections == 1  # once: the old connection's close is not re-sent


async def test_a_first_token_that_expired_already_is_replaced_before_connecting(
    secured: ServerProcess,
) -> None:
    expired, _ = token("late", -5)

    async def fresh_token() -> str:
        return token("late")[0]

    async with connect(
        secured.url("/pushwire"), token=expired, token_refresh=fresh_token, transports=["stream"]
    ) as client:
        assert client.user == "late" and client.reconnections == 0

    with pytest.raises(ClientClosed) as closed:
        await connect(secured.url("/pushwire"), token=expired, transports=["websocket", "sse"])
    assert closed.value.code == 4005


# -- on the wire ---------------------------------------------------------------------------------


class Wire:
    """One pushwire.v1 connection to /pushwire over `transport`, written from
    docs/protocol.md; the end of a WebSocket reads as a `close` envelope."""

    def __init__(self, server: ServerProcess, transport: str, **hello: Any) -> None:
        self.transport = transport
        self._opened = contextlib.ExitStack()
        self.ws: ClientConnection | None = None
        self.tcp: TcpClient | None = None
        self.http: Poller | Streamer | None = None
        if transport == "websocket":
            self.ws = self._opened.enter_context(
                ws_connect(server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1, open_timeout=WAIT)
            )
            self.ws.send(json.dumps({"type": "hello", **hello}))
        elif transport == "tcp":
            self.tcp = TcpClient(server)
            self.tcp.send({"type": "hello", **hello})
        elif transport in ("longpoll", "polling"):
            self.http = Poller(server, transport, **hello)
        else:
            self.http = Streamer(server, transport, **hello)
        self.welcome = self.http.welcome if self.http is not None else self.next("welcome")

    def send(self, envelope: dict[str, Any]) -> None:
        if self.ws is not None:
            self.ws.send(json.dumps(envelope))
        elif self.tcp is not None:
            self.tcp.send(envelope)
        else:
            assert self.http is not None
            self.http.send(envelope)

    def next(self, kind: str) -> dict[str, Any]:
        """The next envelope of `kind` (bounded by the clients' socket timeouts)."""
        if self.tcp is not None:
            return self.tcp.next(kind)
        if isinstance(self.http, Poller):
            return self.http.receive(1, kind)[0]
        if isinstance(self.http, Streamer):
            return self.http.next(kind)
        assert self.ws is not None
        try:
            while True:
                envelope: dict[str, Any] = json.loads(self.ws.recv(WAIT))
                if envelope["type"] == kind:
                    return envelope
        except ConnectionClosed as closed:
            if kind != "close" or closed.rcvd is None:
                raise
            return {"type": "close", "code": closed.rcvd.code, "reason": closed.rcvd.reason}

    def close(self) -> None:
        if self.ws is not None:
            self._opened.close()
        elif self.tcp is not None:
            self.tcp.close()
        elif isinstance(self.http, Streamer):
            self.http.close()
        elif self.http is not None:
            self.http.conn.close()


def refused_hello(server: ServerProcess, transport: str, **hello: Any) -> tuple[str, int]:
    """The error code and close code a hello gets when it is refused."""
    if transport == "websocket":
        with ws_connect(
            server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1, open_timeout=WAIT
        ) as ws:
            ws.send(json.dumps({"type": "hello", **hello}))
            error = json.loads(ws.recv(WAIT))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(WAIT)
            assert closed.value.rcvd is not None
            return error["code"], closed.value.rcvd.code
    if transport == "tcp":
        tcp = TcpClient(server)
        try:
            tcp.send({"type": "hello", **hello})
            error = tcp.next("error")
            return error["code"], tcp.next("close")["code"]
        finally:
            tcp.close()
    envelopes = http_hello(server, transport, hello)
    assert [envelope["type"] for envelope in envelopes] == ["error", "close"], envelopes
    return envelopes[0]["code"], envelopes[1]["code"]


def http_hello(server: ServerProcess, transport: str, hello: dict[str, Any]) -> list[Any]:
    """What the server answers a hello opening `transport` with, when it ends the answer."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    envelope = json.dumps({"type": "hello", **hello})
    if transport in ("sse", "iframe"):
        origin = urllib.parse.quote("http://localhost:1")
        query = f"hello={urllib.parse.quote(envelope)}&origin={origin}"
        conn.request("GET", f"/pushwire/{transport}?{query}")
    else:
        conn.request("POST", f"/pushwire/{transport}", body=envelope.encode())
    response = conn.getresponse()
    body = response.read()  # the answer ends after the close envelope
    conn.close()
    assert response.status == 200
    if transport == "sse":
        lines = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
    elif transport == "iframe":
        lines = [part.split(b")</script>")[0] for part in body.split(b"<script>p(")[1:]]
    else:
        lines = [line for line in body.split(b"\n") if line]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("transport", WIRE_TRANSPORTS)
def test_a_refresh_with_another_users_token_is_refused_and_the_session_expires_at_the_old_time(
    secured: ServerProcess, transport: str
) -> None:
    first, expires = token("alice")
    wire = Wire(secured, transport, token=first)
    try:
        assert wire.welcome["user"] == "alice"
        assert wire.welcome["expires"] == pytest.approx(expires)
        wire.send({"type": "refresh", "id": 1, "token": token("bob", 60)[0]})
        refused = wire.next("error")
        assert refused == {
            "type": "error",
            "id": 1,
            "code": "unauthorized",
            "message": "the token is for another user than the session's",
        }
        wire.send({"type": "refresh", "id": 2, "token": token("alice", -1)[0]})
        assert wire.next("error") == {
            "type": "error",
            "id": 2,
            "code": "token_expired",
            "message": "token expired",
        }
        wire.send({"type": "refresh", "id": 3})
        assert wire.next("error")["code"] == "bad_request"
        # The session kept its expiry: at that time, the error, then close 4005.
        error = wire.next("error")
        at = time.time()
        assert error == {"type": "error", "code": "token_expired", "message": "token expired"}
        assert wire.next("close")["code"] == 4005
        assert expires <= at <= expires + LATE
    finally:
        wire.close()


@pytest.mark.parametrize("transport", WIRE_TRANSPORTS)
def test_a_refresh_moves_the_expiry_on_the_wire(secured: ServerProcess, transport: str) -> None:
    first, expires = token("carol")
    wire = Wire(secured, transport, token=first)
    try:
        second, later = token("carol", 60)
        wire.send({"type": "refresh", "id": 7, "token": second})
        assert wire.next("refreshed") == {
            "type": "refreshed",
            "id": 7,
            "expires": pytest.approx(later),
        }
        # Alive past the first expiry: answered, not closed (no event says "not closed").
        time.sleep(max(0.0, expires + LATE - time.time()))
        wire.send({"type": "ping"})
        assert wire.next("pong") == {"type": "pong"}
    finally:
        wire.close()


@pytest.mark.parametrize("transport", WIRE_TRANSPORTS)
def test_resuming_a_session_whose_token_expired_needs_a_new_token_of_its_user(
    secured: ServerProcess, transport: str
) -> None:
    first, _ = token("dave", 1.5)
    wire = Wire(secured, transport, token=first)
    welcome = wire.welcome
    try:
        assert wire.next("close")["code"] == 4005  # the token expired: the session waits
    finally:
        wire.close()
    resume = {"session": welcome["session"], "resume": welcome["resume"]}
    assert refused_hello(secured, transport, token=first, **resume) == ("token_expired", 4005)
    assert refused_hello(secured, transport, **resume) == ("token_expired", 4005)
    assert refused_hello(secured, transport, token=token("eve")[0], **resume) == (
        "unauthorized",
        4102,
    )
    assert refused_hello(secured, transport, token="not a token", **resume) == (
        "unauthorized",
        4102,
    )
    # The refusals left the session alone: a new token of its own user resumes it.
    second, later = token("dave", 30)
    again = Wire(secured, transport, token=second, **resume)
    try:
        assert again.welcome["resumed"] is True and again.welcome["user"] == "dave"
        assert again.welcome["expires"] == pytest.approx(later)
    finally:
        again.close()


# -- raw connections: no refresh, closed at the expiry -------------------------------------------


def test_a_raw_websocket_is_closed_with_4005_when_its_token_expires(
    secured: ServerProcess,
) -> None:
    first, expires = token("raw-ws")
    with ws_connect(secured.ws_url(f"/ws/raw-room?token={first}"), open_timeout=WAIT) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(LIFETIME + WAIT)
        at = time.time()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4005, "token expired")
    assert expires <= at <= expires + LATE


def test_a_raw_event_stream_ends_when_its_token_expires_and_its_url_is_refused_after(
    secured: ServerProcess,
) -> None:
    first, expires = token("raw-sse")
    conn = http.client.HTTPConnection(secured.host, secured.port, timeout=LIFETIME + WAIT)
    conn.request("GET", f"/sse/raw-room?token={first}")
    response = conn.getresponse()
    assert response.status == 200
    publish_as_server(secured, "raw-room", "before the expiry")
    body = response.read()  # until the stream ends
    at = time.time()
    conn.close()
    assert b"data: before the expiry\n" in body
    assert expires <= at <= expires + LATE
    # What an EventSource does next, with the URL it has: refused, so that it stops.
    conn = http.client.HTTPConnection(secured.host, secured.port, timeout=WAIT)
    conn.request("GET", f"/sse/raw-room?token={first}", headers={"Last-Event-ID": "x:1"})
    again = conn.getresponse()
    refused = again.read()
    conn.close()
    assert (again.status, refused) == (401, b"token expired\n")


# -- the connect proxy: its answer's expires is a token's exp -----------------------------------


def test_a_connect_proxys_expires_closes_the_connection_unless_refreshed() -> None:
    with running_backend() as backend:
        server = start_server(
            "--connect-proxy", backend.url("/connect"), "--set", "jwt_leeway=0"
        )  # fmt: skip
        try:
            expires = time.time() + LIFETIME
            refreshed = Wire(server, "websocket", token=f"until:{expires}:frank")
            stale = Wire(server, "longpoll", token=f"until:{expires}:frank")
            assert refreshed.welcome["user"] == "frank"
            assert refreshed.welcome["expires"] == pytest.approx(expires)
            later = time.time() + 60
            refreshed.send({"type": "refresh", "id": 1, "token": f"until:{later}:frank"})
            assert refreshed.next("refreshed")["expires"] == pytest.approx(later)
            refreshed.send({"type": "refresh", "id": 2, "token": f"until:{later}:grace"})
            assert refreshed.next("error")["code"] == "unauthorized"  # another user
            assert stale.next("error")["code"] == "token_expired"
            at = time.time()
            assert stale.next("close")["code"] == 4005
            assert expires <= at <= expires + LATE
            refreshed.send({"type": "ping"})
            assert refreshed.next("pong") == {"type": "pong"}  # still open
            refreshed.close()
            stale.close()
        finally:
            server.stop()


# -- several nodes: the expiry moves with the session ---------------------------------------------


def test_a_session_taken_over_by_another_node_keeps_its_token_expiry(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    first_node, second_node = (
        server_factory(
            "--broker", redis_server.url, "--jwt-secret", SECRET, "--set", "jwt_leeway=0"
        )
        for _ in range(2)
    )
    first, expires = token("heidi", 3.0)
    opened = Wire(first_node, "websocket", token=first)
    resume = {"session": opened.welcome["session"], "resume": opened.welcome["resume"]}
    # Resumed on the other node without a token: it keeps its token's expiry...
    moved = Wire(second_node, "stream", **resume)
    try:
        assert moved.welcome["resumed"] is True and moved.welcome["user"] == "heidi"
        assert moved.welcome["expires"] == pytest.approx(expires)
        assert opened.next("close")["code"] == 4004  # taken over
        # ...and is closed with 4005 there when it passes.
        assert moved.next("error")["code"] == "token_expired"
        at = time.time()
        assert moved.next("close")["code"] == 4005
        assert expires <= at <= expires + LATE
    finally:
        opened.close()
        moved.close()
