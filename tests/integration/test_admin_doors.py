"""The admin page's stats channel, door by door: only an admin session (an admin token from
`POST /admin/session`, or an admin JWT) may subscribe to it; every other client is refused at
every door (each pushwire.v1 transport, TCP, raw `/ws/<channel>` and `/sse/<channel>`), the
HTTP API reads and writes it for nobody, and with the page off nobody gets it at all."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import jwt
import pytest

from pushwire import Hub
from pushwire.config import Config
from tests.door_clients import (
    ENVELOPE_DOORS,
    WAIT,
    Envelopes,
    RawSse,
    RawWebSocket,
    Target,
    api_call,
    open_envelopes,
)
from tests.integration.auth_matrix_deciders import running_asgi_hub
from tests.redis_helpers import RedisServer
from tests.servers import ServerProcess, start_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STATS: Final = "$pushwire:stats"
SECRET: Final = "the secret of the admin tests' tokens, long enough"
API_KEY: Final = "the admin tests' API key"


def token(user: str, **claims: object) -> str:
    return jwt.encode({"sub": user, "exp": time.time() + 600, **claims}, SECRET, "HS256")


def admin_session(server: ServerProcess, credential: str | None) -> tuple[int, Any]:
    """`POST /admin/session` with `credential` as the bearer: the status and the answer."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    try:
        conn.request("POST", "/admin/session", headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response.status, json.loads(body) if response.status == 200 else body.decode()


def get(server: ServerProcess, path: str) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status


@pytest.fixture(scope="module")
def admin_server() -> Iterator[ServerProcess]:
    server = start_server(
        "--admin",
        "--admin-interval",
        "0.2",
        "--jwt-secret",
        SECRET,
        "--api-key",
        API_KEY,
        "--tcp-port",
        "0",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def off_server() -> Iterator[ServerProcess]:
    server = start_server("--api-key", API_KEY, "--tcp-port", "0")
    try:
        yield server
    finally:
        server.stop()


def _connect(
    door: str, server: Target, credential: str | None, channel: str = "elsewhere"
) -> Envelopes:
    """A pushwire.v1 connection at `door`, welcomed (`ws-v1`: the WebSocket at
    `/ws/<channel>`)."""
    hello: dict[str, Any] = {"token": credential} if credential is not None else {}
    client = open_envelopes(door, server, hello, channel=channel)
    welcome = client.recv()
    assert welcome["type"] == "welcome", welcome
    return client


def _subscribe(client: Envelopes, channel: str = STATS) -> dict[str, Any]:
    client.send({"type": "subscribe", "id": 7, "channel": channel})
    while True:
        reply = client.recv()
        if reply.get("id") == 7:
            return reply


def _figures(client: Envelopes) -> dict[str, Any]:
    """The next set of figures published to the stats channel."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        envelope = client.recv(timeout=10)
        if envelope["type"] == "message" and envelope["channel"] == STATS:
            figures: dict[str, Any] = json.loads(envelope["data"])
            return figures
    raise TimeoutError("no figures")


# -- who may log in ---------------------------------------------------------------------------


def test_the_session_endpoint_asks_for_the_key_or_an_admin_jwt(
    admin_server: ServerProcess,
) -> None:
    assert admin_session(admin_server, None)[0] == 401
    assert admin_session(admin_server, "not the key")[0] == 401
    assert admin_session(admin_server, token("alice"))[0] == 401  # a JWT, but no admin's
    status, answer = admin_session(admin_server, API_KEY)
    assert status == 200 and answer["channel"] == STATS and answer["publish"] is True
    assert answer["token"].startswith("pwadmin.") and API_KEY not in answer["token"]
    admin_jwt = token("root", admin=True)
    status, answer = admin_session(admin_server, admin_jwt)
    assert status == 200 and answer["token"] == admin_jwt and answer["publish"] is False
    logged = b"".join(admin_server.output).decode()
    assert "refused the admin page" in logged and API_KEY not in logged


def test_the_page_is_not_there_unless_turned_on(off_server: ServerProcess) -> None:
    assert get(off_server, "/admin") == 404
    assert get(off_server, "/admin/admin.js") == 404
    assert admin_session(off_server, API_KEY)[0] == 404


# -- pushwire.v1 doors, TCP included --------------------------------------------------------------


@pytest.mark.parametrize("door", ENVELOPE_DOORS)
def test_an_admin_session_gets_the_figures_at_every_door(
    admin_server: ServerProcess, door: str
) -> None:
    _, answer = admin_session(admin_server, API_KEY)
    # An admin session is no user: ws-v1 opens at the stats channel (others need a user).
    with _connect(door, admin_server, answer["token"], channel=STATS) as client:
        assert _subscribe(client)["type"] == "subscribed"
        figures = _figures(client)
        assert figures["node"] and "sessions" in figures and "rates" in figures
        # Not even an admin writes to it.
        client.send({"type": "publish", "id": 8, "channel": STATS, "data": "forged"})
        reply = client.recv()
        while reply.get("id") != 8:
            reply = client.recv()
        assert reply["type"] == "error" and reply["code"] == "forbidden", reply


@pytest.mark.parametrize("door", ENVELOPE_DOORS)
@pytest.mark.parametrize("who", ["user", "granted-by-claim", "anonymous-off"])
def test_nobody_else_subscribes_at_any_door(
    admin_server: ServerProcess, off_server: ServerProcess, door: str, who: str
) -> None:
    if who == "user":
        server, credential = admin_server, token("alice")
    elif who == "granted-by-claim":  # a channels claim grants every channel but this one
        server, credential = admin_server, token("mallory", channels=[STATS])
    else:  # the page off: the open server's clients are whoever they claim
        server, credential = off_server, None
    with _connect(door, server, credential) as client:
        reply = _subscribe(client)
        assert reply["type"] == "error" and reply["code"] == "forbidden", reply
        assert STATS in reply["message"]


# -- the raw doors --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["on", "off"])
def test_raw_websocket_and_sse_refuse_the_stats_channel(
    admin_server: ServerProcess, off_server: ServerProcess, page: str
) -> None:
    server = admin_server if page == "on" else off_server
    headers = {"Authorization": f"Bearer {token('alice')}"} if page == "on" else {}
    with RawWebSocket(server, STATS, headers=headers) as raw:
        assert raw.recv() == (4101, f"{STATS!r} is the admin page's: an admin token is needed")
    sse = RawSse(server, STATS, headers=headers)
    assert sse.status == 403 and STATS in sse.refusal


def test_raw_doors_let_an_admin_token_in(admin_server: ServerProcess) -> None:
    _, answer = admin_session(admin_server, API_KEY)
    headers = {"Authorization": f"Bearer {answer['token']}"}
    with RawWebSocket(admin_server, STATS, headers=headers) as raw:
        figures = raw.recv(timeout=10)
        assert isinstance(figures, str) and json.loads(figures)["node"]
    with RawSse(admin_server, STATS, headers=headers) as sse:
        assert sse.status == 200
        assert json.loads(str(sse.next_event(timeout=10).data))["node"]


# -- the HTTP API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/history/{STATS}"),
        ("GET", f"/api/presence/{STATS}"),
        ("POST", f"/api/publish/{STATS}"),
    ],
)
@pytest.mark.parametrize("page", ["on", "off"])
def test_the_api_neither_reads_nor_writes_the_stats_channel(
    admin_server: ServerProcess, off_server: ServerProcess, method: str, path: str, page: str
) -> None:
    server = admin_server if page == "on" else off_server
    status, answer = api_call(server, method, path, "forged" if method == "POST" else None, API_KEY)
    assert status == 403, answer
    assert STATS in answer


# -- several processes ------------------------------------------------------------------------


def test_an_admin_session_hears_every_node_of_a_redis_broker(
    server_factory: Callable[..., ServerProcess], redis_server: RedisServer
) -> None:
    args = (
        "--broker",
        redis_server.url,
        "--admin",
        "--admin-interval",
        "0.2",
        "--api-key",
        API_KEY,
    )
    first, second = server_factory(*args), server_factory(*args)
    # An admin token from one node opens an admin session on another: they share the key.
    _, answer = admin_session(first, API_KEY)
    with (
        RawWebSocket(second, "news", {"user": "ann"}),
        _connect("websocket", second, answer["token"]) as client,
    ):
        assert _subscribe(client)["type"] == "subscribed"
        nodes: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 30
        while len(nodes) < 2 or not any(f["channels"] for f in nodes.values()):
            assert time.monotonic() < deadline, nodes
            figures = _figures(client)
            nodes[figures["node"]] = figures
        listed = [row for f in nodes.values() for row in f["channels"]]
        assert listed == [{"channel": "news", "subscribers": 1, "users": ["ann"], "more_users": 0}]


def test_the_asgi_door_serves_the_page_and_its_figures() -> None:
    config = Config(admin=True, admin_interval=0.2, api_key=API_KEY)
    with running_asgi_hub(lambda: Hub(config=config)) as address:
        conn = http.client.HTTPConnection(address.host, address.port, timeout=WAIT)
        try:
            conn.request("GET", "/admin")
            response = conn.getresponse()
            assert response.status == 200 and b"/admin/admin.js" in response.read()
            conn.request("POST", "/admin/session", headers={"Authorization": f"Bearer {API_KEY}"})
            response = conn.getresponse()
            answer = json.loads(response.read())
        finally:
            conn.close()
        with _connect("websocket", address, answer["token"]) as client:
            assert _subscribe(client)["type"] == "subscribed"
            assert _figures(client)["sessions"] == {"websocket": 1}
