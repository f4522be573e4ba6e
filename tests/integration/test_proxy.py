"""The backend proxy, door by door: a real backend process (tests/proxy_backend.py) decides who
connects, what they read and what they publish, on `/pushwire` over WebSocket and over the
HTTP transports (long-poll, NDJSON stream, SSE), raw `/ws/<channel>`, raw `/sse/<channel>` and
the TCP port; a refused identity gets the documented code, an allowed one gets through, only
the listed headers reach the backend, and a backend that is slow, broken, down or overloaded
gives 1011 / 503 within `proxy_timeout`, never a hang."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pushwire.cli import refuse_to_start
from pushwire.config import Config
from tests.helpers import PUSHWIRE_V1
from tests.proxy_backend import Backend, running_backend
from tests.servers import ServerProcess, start_server
from tests.wire_clients import TcpClient

pytestmark = pytest.mark.integration

API_KEY = "the-api-key-of-the-proxy-tests"
#: The servers' proxy_timeout, seconds.
TIMEOUT = 1.0
WAIT = 5.0
DOORS = ["pushwire", "longpoll", "stream", "sse-v1", "ws", "sse", "tcp"]
#: Documented: a refusal's close code, its error code, and raw SSE's HTTP status.
ERROR_CODES = {"forbidden": 4101, "unauthorized": 4102, "unavailable": 1011}
STATUSES = {403: 4101, 401: 4102, 503: 1011}

#: An attempt's outcome: ("open",) or ("refused", close code, message).
Outcome = tuple[Any, ...]


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with running_backend() as running:
        yield running


def proxied(backend: Backend, *args: str) -> ServerProcess:
    return start_server(
        "--connect-proxy", backend.url("/connect"),
        "--subscribe-proxy", backend.url("/subscribe"),
        "--publish-proxy", backend.url("/publish"),
        "--api-key", API_KEY, "--tcp-port", "0", "--set", f"proxy_timeout={TIMEOUT}",
        *args,
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(backend: Backend) -> Iterator[ServerProcess]:
    running = proxied(backend)
    yield running
    running.stop()


# -- clients at each door -------------------------------------------------------------------------


def publish(server: ServerProcess, channel: str, body: bytes) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    conn.request("POST", f"/api/publish/{channel}", body, {"Authorization": f"Bearer {API_KEY}"})
    status = conn.getresponse().status
    conn.close()
    return status


class Prober:
    """Publishes `probe` to a channel every 0.1 s (raw mode says nothing when a subscription
    is in place: a probe that arrives says it is)."""

    def __init__(self, server: ServerProcess, channel: str) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(server, channel), daemon=True)

    def _run(self, server: ServerProcess, channel: str) -> None:
        while not self.stop.wait(0.1):
            publish(server, channel, b"probe")

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def headers_of(cookie: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**({"Cookie": f"session={cookie}"} if cookie else {}), **(extra or {})}


async def pushwire_attempt(
    server: ServerProcess, channel: str, token: str | None, cookie: str | None,
    extra: dict[str, str] | None = None,
) -> Outcome:  # fmt: skip
    ws = await connect(
        server.ws_url("/pushwire"),
        subprotocols=PUSHWIRE_V1,
        additional_headers=headers_of(cookie, extra),
    )
    hello: dict[str, Any] = {"type": "hello", "user": "mallory"}
    if token is not None:
        hello["token"] = token
    await ws.send(json.dumps(hello))
    answer = await envelope(ws)
    if answer["type"] == "error":
        code, reason = await closed_with(ws)
        assert code == ERROR_CODES[answer["code"]]
        assert reason == answer["message"][:120]
        return ("refused", code, answer["message"])
    assert answer["type"] == "welcome"
    await ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": channel}))
    answer = await envelope(ws)
    await ws.close()
    if answer["type"] == "error":
        assert answer["id"] == 1
        return ("refused", ERROR_CODES[answer["code"]], answer["message"])
    assert answer["type"] == "subscribed"
    return ("open",)


async def ws_attempt(
    server: ServerProcess, channel: str, token: str | None, cookie: str | None,
    extra: dict[str, str] | None = None,
) -> Outcome:  # fmt: skip
    headers = headers_of(cookie, extra)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    ws = await connect(server.ws_url(f"/ws/{channel}"), additional_headers=headers)
    with Prober(server, channel):
        try:
            got = await asyncio.wait_for(ws.recv(), WAIT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return ("refused", closed.rcvd.code, closed.rcvd.reason)
    assert got == "probe"
    await ws.close()
    return ("open",)


def sse_attempt(
    server: ServerProcess, channel: str, token: str | None, cookie: str | None,
    extra: dict[str, str] | None = None,
) -> Outcome:  # fmt: skip
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    query = f"?token={token}" if token is not None else ""
    conn.request("GET", f"/sse/{channel}{query}", headers=headers_of(cookie, extra))
    response = conn.getresponse()
    if response.status != 200:
        message = response.read().decode().strip()
        conn.close()
        return ("refused", STATUSES[response.status], message)
    with Prober(server, channel):
        while (line := response.readline()) and line != b"data: probe\n":
            pass
    conn.close()
    assert line == b"data: probe\n"
    return ("open",)


def tcp_attempt(
    server: ServerProcess, channel: str, token: str | None, cookie: str | None,
    extra: dict[str, str] | None = None,
) -> Outcome:  # fmt: skip
    client = TcpClient(server)
    try:
        if token is None and cookie is not None:
            token = f"user:{cookie}"  # no headers on the TCP port: the token says it
        client.send({"type": "hello", "user": "mallory", **({"token": token} if token else {})})
        answer = tcp_envelope(client)
        if answer["type"] == "error":
            closing = tcp_envelope(client)
            assert (closing["type"], closing["code"]) == ("close", ERROR_CODES[answer["code"]])
            return ("refused", closing["code"], answer["message"])
        assert answer["type"] == "welcome"
        client.send({"type": "subscribe", "id": 1, "channel": channel})
        answer = tcp_envelope(client)
        if answer["type"] == "error":
            return ("refused", ERROR_CODES[answer["code"]], answer["message"])
        assert answer["type"] == "subscribed"
        return ("open",)
    finally:
        client.close()


class HttpEnvelopes:
    """pushwire.v1 over an HTTP transport of `/pushwire` (`longpoll`, `stream`, or `sse`
    opened with `GET ?hello=` as an EventSource must), sending the request headers we choose
    (a browser's cookie)."""

    def __init__(
        self, server: ServerProcess, kind: str, hello: dict[str, Any], headers: dict[str, str]
    ) -> None:
        self.server, self.kind = server, kind
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
        self.session: dict[str, str] = {}
        self.cursor = 0
        body = json.dumps(hello)
        if kind == "sse":
            query = urllib.parse.quote(body)
            self.conn.request("GET", f"/pushwire/sse?hello={query}", headers=headers)
        else:
            self.conn.request("POST", f"/pushwire/{kind}", body, headers)
        response = self.conn.getresponse()
        assert response.status == 200
        if kind == "longpoll":
            self.backlog = self._envelopes(response)
        else:
            self.stream, self.backlog = response, []

    def _envelopes(self, response: http.client.HTTPResponse) -> list[dict[str, Any]]:
        self.cursor = int(response.headers["Pushwire-Cursor"])
        return [json.loads(line) for line in response.read().splitlines() if line]

    def next(self) -> dict[str, Any]:
        """The next envelope (a long-poll polls for it)."""
        while not self.backlog:
            if self.kind != "longpoll":
                line = self.stream.readline()
                if line.startswith(b"{") or line.startswith(b"data: {"):
                    self.backlog.append(json.loads(line.removeprefix(b"data: ")))
                continue
            target = f"/pushwire/longpoll?cursor={self.cursor}"
            self.conn.request("GET", target, headers=self.session)
            self.backlog = self._envelopes(self.conn.getresponse())
        envelope = self.backlog.pop(0)
        if envelope["type"] == "welcome":
            self.session = {"Pushwire-Session": f"{envelope['session']} {envelope['resume']}"}
        return envelope

    def send(self, envelope: dict[str, Any]) -> None:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=WAIT)
        conn.request("POST", "/pushwire/send", json.dumps(envelope), self.session)
        assert conn.getresponse().status == 204
        conn.close()

    def close(self) -> None:
        self.conn.close()


def http_attempt(
    server: ServerProcess, kind: str, channel: str, token: str | None, cookie: str | None,
    extra: dict[str, str] | None = None,
) -> Outcome:  # fmt: skip
    hello: dict[str, Any] = {"type": "hello", "user": "mallory"}
    if token is not None:
        hello["token"] = token
    client = HttpEnvelopes(server, kind, hello, headers_of(cookie, extra))
    try:
        answer = client.next()
        if answer["type"] == "error":
            closing = client.next()
            assert (closing["type"], closing["code"]) == ("close", ERROR_CODES[answer["code"]])
            return ("refused", closing["code"], answer["message"])
        assert answer["type"] == "welcome"
        client.send({"type": "subscribe", "id": 1, "channel": channel})
        while (answer := client.next())["type"] not in ("subscribed", "error"):
            pass
        if answer["type"] == "error":
            assert answer["id"] == 1
            return ("refused", ERROR_CODES[answer["code"]], answer["message"])
        return ("open",)
    finally:
        client.close()


async def attempt(
    door: str,
    server: ServerProcess,
    channel: str,
    *,
    token: str | None = None,
    cookie: str | None = None,
    extra: dict[str, str] | None = None,
) -> Outcome:
    """Connect at `door` as the credential says and read `channel`."""
    if door == "pushwire":
        return await pushwire_attempt(server, channel, token, cookie, extra)
    if door == "ws":
        return await ws_attempt(server, channel, token, cookie, extra)
    if door in ("longpoll", "stream", "sse-v1"):
        kind = door.removesuffix("-v1")
        return await asyncio.to_thread(http_attempt, server, kind, channel, token, cookie, extra)
    blocking = sse_attempt if door == "sse" else tcp_attempt
    return await asyncio.to_thread(blocking, server, channel, token, cookie, extra)


async def envelope(ws: ClientConnection) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    return answer


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    try:
        async with asyncio.timeout(WAIT):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None)


def tcp_envelope(client: TcpClient) -> dict[str, Any]:
    """The next envelope that is not a heartbeat."""
    while (answer := client.recv())["type"] == "ping":
        client.send({"type": "pong"})
    return answer


# -- connect and subscribe, every door -------------------------------------------------------------


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    ("token", "cookie", "channel", "expected"),
    [
        (None, None, "chat:lobby", ("refused", 4102, "sign in first")),
        ("refuse", None, "chat:lobby", ("refused", 4101, "you are banned")),
        # Cut to fit a WebSocket close frame: 120 bytes of UTF-8.
        ("refuse:long", None, "chat:lobby", ("refused", 4101, "é" * 60)),
        ("nonsense", None, "chat:lobby", ("refused", 4102, "unknown credential")),
        (None, "alice", "chat:lobby", ("open",)),
        ("user:alice", None, "chat:lobby", ("open",)),
        (None, "alice", "secret:plans", ("refused", 4101, "not for you")),
        (None, "admin", "secret:plans", ("open",)),
    ],
    ids=[
        "nobody",
        "banned",
        "banned-at-length",
        "unknown",
        "cookie",
        "token",
        "not-a-member",
        "member",
    ],
)
async def test_the_backend_decides_who_connects_and_reads(
    server: ServerProcess,
    door: str,
    token: str | None,
    cookie: str | None,
    channel: str,
    expected: Outcome,
) -> None:
    assert await attempt(door, server, channel, token=token, cookie=cookie) == expected


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    ("token", "channel", "message"),
    [
        ("status:500", "chat:lobby", "the app's backend answered 500 to the connect question"),
        (
            "garbage",
            "chat:lobby",
            "the app's backend's answer to the connect question is unusable: not JSON",
        ),
        ("user:alice", "status:500", "the app's backend answered 500 to the subscribe question"),
    ],
    ids=["connect-500", "connect-not-json", "subscribe-500"],
)
async def test_a_broken_backend_gives_1011_or_503(
    server: ServerProcess, door: str, token: str, channel: str, message: str
) -> None:
    assert await attempt(door, server, channel, token=token) == ("refused", 1011, message)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    ("token", "channel", "decision"),
    [("slow:10", "chat:lobby", "connect"), ("user:alice", "slow:10", "subscribe")],
    ids=["connect", "subscribe"],
)
async def test_a_slow_backend_gives_1011_or_503_within_proxy_timeout(
    server: ServerProcess, door: str, token: str, channel: str, decision: str
) -> None:
    started = time.monotonic()
    outcome = await attempt(door, server, channel, token=token)
    elapsed = time.monotonic() - started
    message = f"the app's backend did not answer the {decision} question within 1 s"
    assert outcome == ("refused", 1011, message)
    assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1.0


@pytest.mark.parametrize("door", DOORS)
async def test_a_backend_that_is_down_gives_1011_or_503_at_once(door: str) -> None:
    with running_backend() as gone:
        pass  # its port is closed now: nobody answers there
    server = proxied(gone)
    try:
        started = time.monotonic()
        outcome = await attempt(door, server, "chat:lobby", cookie="alice")
        assert time.monotonic() - started < TIMEOUT + 1.0
        assert outcome == ("refused", 1011, "the app's backend is unreachable (ConnectError)")
    finally:
        server.stop()


# -- who the client is, and the headers the backend sees -------------------------------------------


async def test_the_backend_says_who_the_client_is_not_its_claim(server: ServerProcess) -> None:
    ws = await connect(
        server.ws_url("/pushwire"),
        subprotocols=PUSHWIRE_V1,
        additional_headers=headers_of("alice"),
    )
    await ws.send(json.dumps({"type": "hello", "user": "mallory"}))
    assert (await envelope(ws))["user"] == "alice"
    await ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": "chat:who"}))
    assert (await envelope(ws))["type"] == "subscribed"
    await ws.send(json.dumps({"type": "presence", "id": 2, "channel": "chat:who"}))
    members = (await envelope(ws))["members"]
    # The backend's info, and the demo app's own (its on_connect runs after the proxy).
    assert [(m["user"], m["info"]) for m in members] == [
        ("alice", {"name": "Alice", "via": "websocket"})
    ]
    await ws.close()
    client = TcpClient(server)
    assert client.hello(user="mallory", token="user:bob")["user"] == "bob"
    client.close()


@pytest.mark.parametrize("door", ["pushwire", "longpoll", "stream", "ws", "sse"])
async def test_only_the_listed_headers_reach_the_backend(
    server: ServerProcess, backend: Backend, door: str
) -> None:
    cookie = f"headers-{door}"
    extra = {"X-Secret": "not for the backend", "X-Tenant": "t1"}
    assert await attempt(door, server, "chat:lobby", cookie=cookie, extra=extra) == ("open",)
    asked = [
        (question.get("transport"), question["headers"])
        for question in backend.requests()
        if question.get("headers", {}).get("cookie") == f"session={cookie}"
    ]
    # The connect question, then the subscribe question with the headers of the request that
    # opened the session (over long-poll and stream, the subscribe came in a later request).
    assert [headers for _, headers in asked] == [{"cookie": f"session={cookie}"}] * 2
    transport = {"pushwire": "websocket", "ws": "websocket", "sse": "sse"}.get(door, door)
    assert asked[0][0] == transport


async def test_the_headers_passed_on_are_those_listed(backend: Backend) -> None:
    server = proxied(backend, "--proxy-header", "X-Tenant")
    try:
        extra = {"X-Tenant": "tenant-42", "X-Secret": "not for the backend"}
        # The cookie is not listed any more: the backend does not see it.
        assert await attempt("ws", server, "chat:lobby", cookie="alice", extra=extra) == (
            "refused",
            4102,
            "sign in first",
        )
        asked = [q for q in backend.requests("/connect") if "x-tenant" in q["headers"]]
        assert [q["headers"] for q in asked] == [{"x-tenant": "tenant-42"}]
    finally:
        server.stop()


# -- publish ---------------------------------------------------------------------------------------


def published_over_longpoll(server: ServerProcess, request: dict[str, Any]) -> dict[str, Any]:
    client = HttpEnvelopes(server, "longpoll", {"type": "hello"}, headers_of("alice"))
    assert client.next()["type"] == "welcome"
    client.send(request)
    answer = client.next()
    client.close()
    return answer


@pytest.mark.parametrize("door", ["pushwire", "longpoll", "tcp"])
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("hello", ("published", None)),
        ("forbidden words", ("forbidden", "mind your language")),
        ("status:500", ("unavailable", "the app's backend answered 500 to the publish question")),
        (
            "slow:10",
            ("unavailable", "the app's backend did not answer the publish question within 1 s"),
        ),
    ],
    ids=["allowed", "refused", "broken", "slow"],
)
async def test_the_backend_decides_what_an_envelope_client_publishes(
    server: ServerProcess, door: str, data: str, expected: tuple[str, str | None]
) -> None:
    request = {"type": "publish", "id": 7, "channel": "chat:talk", "data": data}
    started = time.monotonic()
    if door == "pushwire":
        ws = await connect(
            server.ws_url("/pushwire"),
            subprotocols=PUSHWIRE_V1,
            additional_headers=headers_of("alice"),
        )
        await ws.send(json.dumps({"type": "hello"}))
        assert (await envelope(ws))["type"] == "welcome"
        await ws.send(json.dumps(request))
        answer = await envelope(ws)
        await ws.close()
    elif door == "longpoll":
        answer = await asyncio.to_thread(published_over_longpoll, server, request)
    else:
        client = TcpClient(server)
        client.hello(token="user:alice")
        client.send(request)
        answer = await asyncio.to_thread(tcp_envelope, client)
        client.close()
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert answer["id"] == 7
    if expected[0] == "published":
        assert answer["type"] == "published"
    else:
        assert (answer["type"], answer["code"], answer["message"]) == ("error", *expected)


async def test_the_backend_decides_what_a_raw_websocket_publishes(server: ServerProcess) -> None:
    reader = await connect(server.ws_url("/ws/chat:raw"), additional_headers=headers_of("bob"))
    writer = await connect(server.ws_url("/ws/chat:raw"), additional_headers=headers_of("alice"))
    for ws in (reader, writer):
        # Both subscribed: each sees the server's probe.
        with Prober(server, "chat:raw"):
            assert await asyncio.wait_for(ws.recv(), WAIT) == "probe"
    await writer.send("hello from alice")
    while (got := await asyncio.wait_for(reader.recv(), WAIT)) == "probe":
        pass
    assert got == "hello from alice"
    await writer.send("forbidden words")
    assert await closed_with(writer) == (4101, "mind your language")
    broken = await connect(server.ws_url("/ws/chat:raw"), additional_headers=headers_of("carol"))
    with Prober(server, "chat:raw"):
        assert await asyncio.wait_for(broken.recv(), WAIT) == "probe"
    await broken.send("status:503")
    assert await closed_with(broken) == (
        1011,
        "the app's backend answered 503 to the publish question",
    )
    await reader.close()


# -- bounds, tokens beside the proxy, shutdown -----------------------------------------------------


async def test_questions_over_proxy_max_concurrent_are_refused_at_once(backend: Backend) -> None:
    server = proxied(backend, "--set", "proxy_max_concurrent=2", "--set", "proxy_timeout=5")
    try:
        asked = len(backend.requests())
        waiting = [
            asyncio.ensure_future(attempt("pushwire", server, "chat:lobby", token="slow:1.5"))
            for _ in range(2)
        ]
        await asyncio.to_thread(backend.requests, at_least=asked + 2)  # both are in flight
        started = time.monotonic()
        refused = await attempt("pushwire", server, "chat:lobby", cookie="alice")
        assert time.monotonic() - started < 1.0  # the slow ones take 1.5 s
        assert refused == (
            "refused",
            1011,
            "the app's backend is busy (2 questions in flight, the most proxy_max_concurrent "
            "allows)",
        )
        assert await asyncio.gather(*waiting) == [("open",), ("open",)]
        assert await attempt("pushwire", server, "chat:lobby", cookie="alice") == ("open",)
    finally:
        server.stop()


async def test_with_jwt_too_a_token_is_checked_and_the_backend_asked_only_without_one(
    backend: Backend,
) -> None:
    secret = "the secret of the tokens in these tests, long enough"
    server = proxied(backend, "--jwt-secret", secret)
    try:
        token = jwt.encode({"sub": "carol", "exp": time.time() + 60}, secret, "HS256")
        asked = len(backend.requests("/connect"))
        client = TcpClient(server)
        assert client.hello(token=token)["user"] == "carol"
        client.close()
        assert len(backend.requests("/connect")) == asked
        assert await attempt("pushwire", server, "chat:lobby", token="user:alice") == (
            "refused",
            4102,
            "invalid token: not three base64url parts",
        )
        assert await attempt("pushwire", server, "chat:lobby", cookie="alice") == ("open",)
        assert len(backend.requests("/connect")) == asked + 1
    finally:
        server.stop()


def test_the_server_stops_cleanly_after_asking_the_backend(backend: Backend) -> None:
    server = proxied(backend)
    assert asyncio.run(attempt("pushwire", server, "chat:lobby", cookie="alice")) == ("open",)
    assert server.stop() == 0
    output = b"".join(server.output).decode()
    assert "Traceback" not in output
    assert "Unclosed" not in output


# -- the command line ---------------------------------------------------------------------------


def test_a_connect_proxy_is_authentication_enough_to_serve_beyond_loopback() -> None:
    proxy = "http://127.0.0.1:8001/pushwire/connect"
    assert refuse_to_start(Config(host="0.0.0.0", connect_proxy=proxy), insecure=False) is None
    subscribe_only = Config(host="0.0.0.0", subscribe_proxy=proxy)
    refusal = refuse_to_start(subscribe_only, insecure=False)
    assert refusal is not None and "--connect-proxy" in refusal


def test_a_proxy_url_that_is_not_http_stops_the_server_in_one_line() -> None:
    with pytest.raises(RuntimeError) as failed:
        start_server("--connect-proxy", "ftp://127.0.0.1/connect")
    assert failed.value.args[0].endswith(
        "pushwire serve: the connect proxy needs an http:// or https:// URL\n"
    )
