"""Sessions that cannot be stolen, and an /echo that is only an echo.

A session id alone resumes, polls and sends nothing: the welcome's resume secret is needed,
and only at the endpoint that opened the session. The HTTP transports name their session in
the `Pushwire-Session` header, not in the URL. `/echo` echoes and reaches nothing else.
Real servers, clients written by hand (tests/wire_clients.py's, and WebSockets).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import (
    Poller,
    RawClient,
    Streamer,
    client_frame,
    publish,
    session_header,
    stats,
    subscribe,
)

pytestmark = pytest.mark.integration

PROTOCOLS = [Subprotocol("pushwire.v1")]
HTTP_KINDS = ("longpoll", "polling", "sse", "stream")
FORBIDDEN = {"type": "error", "code": "forbidden", "message": "session secret missing or wrong"}
WRONG = "A" * 22  # a secret of the right shape, not the session's


def request(
    server: ServerProcess,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request on a connection of its own: status, JSON body (or text), headers."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request(method, target, body=body, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    fields = {name.lower(): value for name, value in response.getheaders()}
    try:
        return response.status, json.loads(raw), fields
    except ValueError:
        return response.status, raw.decode(), fields


def send_direct(server: ServerProcess, user: str, text: str) -> Any:
    return request(server, "POST", f"/api/send/{user}", text.encode())[1]


@asynccontextmanager
async def envelope_socket(server: ServerProcess, path: str) -> AsyncIterator[ClientConnection]:
    async with ws_connect(server.ws_url(path), subprotocols=PROTOCOLS) as ws:
        yield ws


async def hello(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", **fields}))
    return await recv(ws)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return envelope


async def until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything that arrives before the answer to a ping sent now."""
    await ws.send(json.dumps({"type": "ping"}))
    got = []
    while (envelope := await recv(ws))["type"] != "pong":
        got.append(envelope)
    return got


def opened(server: ServerProcess, kind: str, path: str = "/pushwire", **hello: Any) -> Any:
    """A client of `path` over the HTTP transport `kind`."""
    if kind in ("longpoll", "polling"):
        return Poller(server, kind, path, **hello)
    return Streamer(server, kind, path, **hello)


def next_envelopes(client: Poller | Streamer, count: int) -> list[dict[str, Any]]:
    """The next `count` envelopes other than `subscribed` and pings' answers."""
    if isinstance(client, Poller):
        return client.receive(count)
    got: list[dict[str, Any]] = []
    while len(got) < count:
        envelope = client.next()
        if envelope["type"] == "message":
            got.append(envelope)
    return got


def pinged(client: Poller | Streamer) -> list[dict[str, Any]]:
    """Everything that arrives before the answer to a ping sent now."""
    client.send({"type": "ping"})
    if isinstance(client, Poller):
        before: list[dict[str, Any]] = []
        while True:
            envelopes = client.backlog or client.poll()
            client.backlog = []
            if not envelopes:
                time.sleep(0.02)  # ajax polling asks again after an interval
            for envelope in envelopes:
                if envelope["type"] == "pong":
                    return before
                before.append(envelope)
    got = []
    while (envelope := client.next())["type"] != "pong":
        got.append(envelope)
    return got


# -- a stolen session id ------------------------------------------------------------------------


@pytest.mark.parametrize("shown", [{}, {"resume": WRONG}, {"resume": None}, {"resume": 7}])
async def test_a_stolen_session_id_resumes_nothing_over_websocket(
    server: ServerProcess, shown: dict[str, Any]
) -> None:
    async with (
        envelope_socket(server, "/pushwire") as victim,
        envelope_socket(server, "/pushwire") as thief,
    ):
        welcome = await hello(victim, user="alice")
        await victim.send(json.dumps({"type": "subscribe", "id": 1, "channel": "private"}))
        assert (await recv(victim))["type"] == "subscribed"
        send_direct(server, "alice", "unacknowledged")
        assert (await recv(victim))["offset"] == 1

        stolen = await hello(thief, session=welcome["session"], **shown)
        # Answered as for an unknown session: a new one, and told the old one is gone.
        assert stolen["resumed"] is False and stolen["expired"] == welcome["session"]
        assert stolen["session"] != welcome["session"] and stolen["user"] is None
        assert stolen["resume"] != welcome["resume"]

        publish(server, "private", b"for alice")
        send_direct(server, "alice", "also for alice")
        got = await until_pong(victim)
        assert [
            (e.get("channel"), e["offset"] if "channel" not in e else None, e["data"]) for e in got
        ] == [
            ("private", None, "for alice"),
            (None, 2, "also for alice"),
        ]
        assert await until_pong(thief) == []  # nothing re-sent, nothing of the channel
        assert victim.close_code is None  # not superseded (4004): it carries on


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_a_stolen_session_id_without_its_secret_polls_sends_and_resumes_nothing(
    server: ServerProcess, kind: str
) -> None:
    victim = opened(server, kind, user="alice")
    subscribe(victim, "private")
    session = victim.welcome["session"]

    # Polling the session: 403 whatever the secret shown, and nothing taken from its queue.
    for named in ({"Pushwire-Session": session}, {"Pushwire-Session": f"{session} {WRONG}"}):
        for poll in ("longpoll", "polling"):
            status, body, _ = request(server, "GET", f"/pushwire/{poll}?cursor=0", None, named)
            assert (status, body) == (403, FORBIDDEN)
    # Named in the URL, as before the header: no secret there either.
    status, body, _ = request(server, "GET", f"/pushwire/longpoll?session={session}&cursor=0")
    assert (status, body) == (403, FORBIDDEN)

    # Sending as the session: refused before a line is read.
    bad = {"Pushwire-Session": f"{session} {WRONG}"}
    for envelope in (
        {"type": "subscribe", "id": 9, "channel": "thief"},
        {"type": "close"},
    ):
        status, body, _ = request(
            server, "POST", "/pushwire/send", json.dumps(envelope).encode(), bad
        )
        assert (status, body) == (403, FORBIDDEN)

    # Resuming it with a hello over the same transport: a new session, told it expired.
    thief = opened(server, kind, session=session, resume=WRONG)
    assert thief.welcome["resumed"] is False and thief.welcome["expired"] == session
    assert thief.welcome["session"] != session and thief.welcome["user"] is None

    publish(server, "private", b"for alice")
    send_direct(server, "alice", "direct for alice")
    got = next_envelopes(victim, 2)
    assert [
        (e.get("channel"), e["offset"] if "channel" not in e else None, e["data"]) for e in got
    ] == [
        ("private", None, "for alice"),
        (None, 1, "direct for alice"),
    ]
    assert pinged(victim) == []  # no `subscribed` for the thief's envelope, no close
    assert pinged(thief) == []  # nothing of the victim's
    if isinstance(victim, Streamer):
        victim.close()
    if isinstance(thief, Streamer):
        thief.close()


# -- resuming with the secret -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["websocket", *HTTP_KINDS, "iframe"])
async def test_a_session_resumes_with_its_secret_on_every_transport(
    server: ServerProcess, kind: str
) -> None:
    async def resume(**fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The welcome and the next message of a connection resuming over `kind`."""
        if kind == "websocket":
            async with envelope_socket(server, "/pushwire") as ws:
                welcome = await hello(ws, **fields)
                return welcome, await recv(ws)
        client = await asyncio.to_thread(opened, server, kind, **fields)
        message = await asyncio.to_thread(next_envelopes, client, 1)
        if isinstance(client, Streamer):
            client.close()
        return client.welcome, message[0]

    async with envelope_socket(server, "/pushwire") as first:
        welcome = await hello(first, user="bea")
        send_direct(server, "bea", "kept")
        assert (await recv(first))["offset"] == 1
        # Say it never arrived: the resumption sends it again (and supersedes this connection).
        again, resent = await resume(
            session=welcome["session"], resume=welcome["resume"], inbox=welcome["inbox"]
        )
    assert (again["resumed"], again["session"], again["resume"]) == (
        True,
        welcome["session"],
        welcome["resume"],
    )
    assert "expired" not in again and again["user"] == "bea"
    assert (resent["offset"], resent["data"]) == (1, "kept")


def test_a_poll_opened_with_get_hello_resumes_with_its_secret_too(server: ServerProcess) -> None:
    first = Poller(server, "longpoll", opening="GET", user="cid")
    again = Poller(server, "polling", opening="GET", session=first.session, resume=first.secret)
    assert again.welcome["resumed"] is True and again.session == first.session


# -- one endpoint's sessions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opened_at", "used_at"),
    [("/echo", "/pushwire"), ("/pushwire", "/echo"), ("/ws/a", "/ws/b"), ("/pushwire", "/ws/a")],
)
async def test_a_session_is_valid_only_at_the_endpoint_that_opened_it(
    server: ServerProcess, opened_at: str, used_at: str
) -> None:
    owner = Poller(server, "longpoll", opened_at)
    session = owner.session
    unknown = {
        "type": "error",
        "code": "session_unknown",
        "message": f"unknown or expired session {session!r}",
    }
    named = session_header(owner.welcome)  # the right secret, at the wrong endpoint
    for target, method in ((f"{used_at}/longpoll?cursor=0", "GET"), (f"{used_at}/send", "POST")):
        body = b'{"type":"ping"}' if method == "POST" else None
        status, answer, _ = await asyncio.to_thread(request, server, method, target, body, named)
        assert (status, answer) == (410, unknown)
    async with envelope_socket(server, used_at) as ws:
        welcome = await hello(ws, session=session, resume=owner.secret)
        assert welcome["resumed"] is False and welcome["expired"] == session
    elsewhere = await asyncio.to_thread(
        Streamer, server, "stream", used_at, session=session, resume=owner.secret
    )
    assert elsewhere.welcome["expired"] == session
    elsewhere.close()
    # At its own endpoint it is untouched, and resumes.
    again = await asyncio.to_thread(
        Poller, server, "polling", opened_at, session=session, resume=owner.secret
    )
    assert again.welcome["resumed"] is True


# -- /echo: an echo service only ------------------------------------------------------------------


ECHO_ONLY = {"code": "forbidden", "message": "/echo is an echo service", "type": "error"}


async def test_echo_over_websocket_has_no_user_and_refuses_channels(server: ServerProcess) -> None:
    async with envelope_socket(server, "/echo") as ws:
        welcome = await hello(ws, user="alice")
        assert welcome["user"] is None  # the user it claims is ignored
        for n, fields in enumerate(
            (
                {"type": "subscribe", "channel": "room"},
                {"type": "publish", "channel": "room", "data": "x"},
                {"type": "presence", "channel": "room"},
            ),
            start=1,
        ):
            await ws.send(json.dumps({**fields, "id": n}))
            assert await recv(ws) == {**ECHO_ONLY, "id": n}
        answer = send_direct(server, "alice", "private")
        assert (answer["user"], answer["nodes"], answer["sessions"]) == ("alice", 0, 0)
        await ws.send(json.dumps({"type": "send", "data": "echo me"}))
        assert await recv(ws) == {"type": "message", "data": "echo me"}
        assert await until_pong(ws) == []  # still open, and nothing of alice's arrived


@pytest.mark.parametrize("kind", [*HTTP_KINDS, "iframe"])
def test_echo_over_every_http_transport_has_no_user_and_refuses_channels(
    server: ServerProcess, kind: str
) -> None:
    client = opened(server, kind, "/echo", user="alice")
    assert client.welcome["user"] is None
    client.send(
        {"type": "subscribe", "id": 1, "channel": "room"},
        {"type": "publish", "id": 2, "channel": "room", "data": "x"},
        {"type": "presence", "id": 3, "channel": "room"},
        {"type": "send", "data": "echo me"},
    )
    send_direct(server, "alice", "private")
    got = [*pinged(client)]
    assert got == [
        {**ECHO_ONLY, "id": 1},
        {**ECHO_ONLY, "id": 2},
        {**ECHO_ONLY, "id": 3},
        {"type": "message", "data": "echo me"},
    ]
    if isinstance(client, Streamer):
        client.close()


def test_a_raw_echo_websocket_opens_no_session_and_ignores_its_user(server: ServerProcess) -> None:
    before = stats(server)["sessions"]
    raw = RawClient(server, "/echo?user=alice")
    raw.send(client_frame(0x1, b"hi"))
    assert raw.recv_frame() == (0x1, b"hi")
    assert stats(server)["sessions"] == before
    assert send_direct(server, "alice", "private")["sessions"] == 0
    raw.send(client_frame(0x1, b"again"))
    assert raw.recv_frame() == (0x1, b"again")  # nothing of alice's came before it
    raw.close()


# -- the session in a header, the hello in a POST -------------------------------------------------


def test_a_preflight_allows_the_session_header(server: ServerProcess) -> None:
    status, _, headers = request(
        server,
        "OPTIONS",
        "/pushwire/longpoll",
        None,
        {
            "Origin": "http://localhost:1",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "pushwire-session",
        },
    )
    assert status == 204
    assert headers["access-control-allow-headers"] == "Content-Type, Pushwire-Session"
    assert headers["access-control-allow-origin"] == "http://localhost:1"


@pytest.mark.parametrize(("kind", "opening"), [(k, o) for k in HTTP_KINDS for o in ("GET", "POST")])
def test_every_opening_kind_takes_the_hello_in_a_post_body_or_in_the_url(
    server: ServerProcess, kind: str, opening: str
) -> None:
    if kind in ("longpoll", "polling"):
        client: Poller | Streamer = Poller(server, kind, opening=opening, user="dot")
    else:
        client = Streamer(server, kind, opening=opening, user="dot")
    assert client.welcome["user"] == "dot" and client.welcome["transport"] == kind
    send_direct(server, "dot", "hi")
    assert next_envelopes(client, 1)[0]["data"] == "hi"
    if isinstance(client, Streamer):
        client.close()


def test_a_post_without_a_hello_and_a_posted_iframe_are_refused(server: ServerProcess) -> None:
    status, body, _ = request(server, "POST", "/pushwire/longpoll", b"")
    assert (status, body) == (
        400,
        {
            "type": "error",
            "code": "bad_request",
            "message": "a POST opening a session needs the hello envelope as its body",
        },
    )
    status, body, headers = request(server, "POST", "/pushwire/iframe", b'{"type":"hello"}')
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert body["message"] == "/pushwire/iframe takes GET, not POST"


# -- several nodes ------------------------------------------------------------------------------


async def test_another_node_hands_a_session_over_only_for_its_secret(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    home, other = (server_factory("--broker", redis_server.url) for _ in range(2))
    async with envelope_socket(home, "/pushwire") as victim:
        welcome = await hello(victim, user="dave")
        session = welcome["session"]
        # A poll or send through the other node: forwarded, and refused by the home node.
        named = {"Pushwire-Session": f"{session} {WRONG}"}
        for method, target in (("GET", "/pushwire/polling?cursor=0"), ("POST", "/pushwire/send")):
            body = b'{"type":"close"}' if method == "POST" else None
            status, answer, _ = await asyncio.to_thread(request, other, method, target, body, named)
            assert (status, answer) == (403, FORBIDDEN)
        # A hello through the other node without the secret: the home node keeps it.
        for shown in ({}, {"resume": WRONG}):
            async with envelope_socket(other, "/pushwire") as thief:
                stolen = await hello(thief, session=session, **shown)
                assert stolen["resumed"] is False and stolen["expired"] == session
                assert await until_pong(thief) == []
        # Nor at another endpoint, with the secret.
        async with envelope_socket(other, "/echo") as thief:
            stolen = await hello(thief, session=session, resume=welcome["resume"])
            assert stolen["resumed"] is False and stolen["expired"] == session
        answer = await asyncio.to_thread(send_direct, home, "dave", "still here")
        assert (answer["user"], answer["nodes"]) == ("dave", 1)
        got = await recv(victim)
        assert (got["offset"], got["data"]) == (1, "still here")

        # With the secret the session moves, and keeps its secret.
        async with envelope_socket(other, "/pushwire") as moved:
            since = {"epoch": got["epoch"], "offset": 1}
            again = await hello(moved, session=session, resume=welcome["resume"], inbox=since)
            assert again["resumed"] is True and again["resume"] == welcome["resume"]
            assert again["session"].split(".")[0] != session.split(".")[0]
