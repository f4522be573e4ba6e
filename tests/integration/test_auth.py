"""Who may do what, door by door, on a server with JWT authentication, an API key and
namespaces: each refusal with its documented code, each allowed action working.

The doors here: `/pushwire` (pushwire.v1 over WebSocket), raw `/ws/<channel>` and
`/ws/<channel>` with pushwire.v1, raw `/sse/<channel>`, the TCP port, and the HTTP API.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import PUSHWIRE_V1
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import TcpClient

pytestmark = pytest.mark.integration

SECRET = "the secret of the tokens in these tests, long enough"
API_KEY = "the-api-key-of-these-tests"
NAMESPACES = """
[namespaces.chat]
subscribe = "authenticated"
publish = "members"

[namespaces.news]
subscribe = "anyone"
publish = "nobody"

[namespaces.dm]
subscribe = "authenticated"
publish = "members"
users_in_name = true

[namespaces.vip]
subscribe = "token"
publish = "members"
presence = false
"""
WAIT = 5.0


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, "exp": time.time() + 300, **claims}, SECRET, "HS256")


@pytest.fixture
def secured(server_factory: ServerFactory, tmp_path: Path) -> ServerProcess:
    config = tmp_path / "pushwire.toml"
    config.write_text(NAMESPACES)
    return server_factory(
        "--jwt-secret", SECRET, "--api-key", API_KEY, "--config", str(config), "--tcp-port", "0"
    )


def api(
    server: ServerProcess, path: str, body: bytes = b"x", key: str | None = API_KEY
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


async def envelope(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next envelope of `kind`."""
    async with asyncio.timeout(WAIT):
        while True:
            got: dict[str, Any] = json.loads(await ws.recv())
            if got["type"] == kind:
                return got


async def v1(server: ServerProcess, **hello: Any) -> ClientConnection:
    ws = await connect(server.ws_url("/pushwire"), subprotocols=PUSHWIRE_V1)
    await ws.send(json.dumps({"type": "hello", **hello}))
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    async with asyncio.timeout(WAIT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None)


# -- connect ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hello", "code", "error"),
    [
        ({"user": "alice"}, 4102, "unauthorized"),  # a claim is no credential
        ({"token": "not-a-jwt"}, 4102, "unauthorized"),
        (
            {
                "token": jwt.encode(
                    {"sub": "alice"}, "another secret, just as long as the first one"
                )
            },
            4102,
            None,
        ),
        ({"token": jwt.encode({"sub": "alice", "exp": time.time() - 60}, SECRET)}, 4005, None),
    ],
)
async def test_connecting_without_a_valid_token_is_refused(
    secured: ServerProcess, hello: dict[str, Any], code: int, error: str | None
) -> None:
    ws = await v1(secured, **hello)
    refused = await envelope(ws, "error")
    assert refused["code"] == ("token_expired" if code == 4005 else "unauthorized")
    assert (await closed_with(ws))[0] == code


async def test_the_token_says_who_the_client_is_not_its_claim(secured: ServerProcess) -> None:
    ws = await v1(secured, user="mallory", token=token("alice"))
    welcome = await envelope(ws, "welcome")
    assert welcome["user"] == "alice"
    await ws.close()


# -- subscribe and publish over pushwire.v1 ----------------------------------------------------


@pytest.mark.parametrize(
    ("user", "channel", "claims", "sub_token", "allowed"),
    [
        ("alice", "chat:lobby", {}, None, True),
        ("alice", "news:today", {}, None, True),
        ("alice", "nope:x", {}, None, False),  # an unknown namespace
        ("alice", "lobby", {}, None, False),  # no default namespace configured
        ("alice", "dm:alice,bob", {}, None, True),
        ("carol", "dm:alice,bob", {}, None, False),
        ("alice", "vip:lounge", {}, None, False),
        ("alice", "vip:lounge", {"channels": ["vip:lounge"]}, None, True),
        ("alice", "$chat:ops", {}, None, False),
        ("alice", "$chat:ops", {}, ("alice", "$chat:ops"), True),
        ("alice", "$chat:ops", {}, ("bob", "$chat:ops"), "unauthorized"),
    ],
)
async def test_who_may_subscribe(
    secured: ServerProcess,
    user: str,
    channel: str,
    claims: dict[str, Any],
    sub_token: tuple[str, str] | None,
    allowed: bool | str,
) -> None:
    ws = await v1(secured, token=token(user, **claims))
    await envelope(ws, "welcome")
    request: dict[str, Any] = {"type": "subscribe", "id": 1, "channel": channel}
    if sub_token is not None:
        request["token"] = token(sub_token[0], channel=sub_token[1])
    await ws.send(json.dumps(request))
    answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    if allowed is True:
        assert answer["type"] == "subscribed", answer
        status, _ = api(secured, f"/api/publish/{channel}", b"for the members")
        assert status == 200
        assert (await envelope(ws, "message"))["data"] == "for the members"
    else:
        code = allowed or "forbidden"  # a token for somebody else is no credential at all
        assert (answer["type"], answer["code"], answer["id"]) == ("error", code, 1)
    await ws.close()


async def test_who_may_publish(secured: ServerProcess) -> None:
    ws = await v1(secured, token=token("alice"))
    await envelope(ws, "welcome")

    async def publish(channel: str, request_id: int) -> dict[str, Any]:
        await ws.send(
            json.dumps({"type": "publish", "id": request_id, "channel": channel, "data": "hi"})
        )
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        return answer

    assert (await publish("news:today", 1))["code"] == "forbidden"  # nobody but the server
    assert (await publish("chat:lobby", 2))["code"] == "forbidden"  # members only
    await ws.send(json.dumps({"type": "subscribe", "id": 3, "channel": "chat:lobby"}))
    assert (await envelope(ws, "subscribed"))["channel"] == "chat:lobby"
    assert (await publish("chat:lobby", 4))["type"] == "published"
    await ws.close()


async def test_presence_is_refused_where_the_namespace_turns_it_off(
    secured: ServerProcess,
) -> None:
    ws = await v1(secured, token=token("alice", channels=["vip:lounge"]))
    await envelope(ws, "welcome")
    await ws.send(
        json.dumps({"type": "subscribe", "id": 1, "channel": "vip:lounge", "presence": True})
    )
    refused = await envelope(ws, "error")
    assert (refused["code"], refused["message"]) == (
        "forbidden",
        "presence is off for 'vip:lounge'",
    )
    await ws.close()


# -- raw /ws/<channel> and /sse/<channel> -------------------------------------------------------


async def test_a_raw_websocket_needs_a_token_and_may_read_only_what_the_rule_allows(
    secured: ServerProcess,
) -> None:
    ws = await connect(secured.ws_url("/ws/chat:lobby?user=alice"))
    assert await closed_with(ws) == (4102, "a connection token is required")
    ws = await connect(secured.ws_url("/ws/nope:x?token=" + token("alice")))
    assert await closed_with(ws) == (4101, "no namespace 'nope' on this server (channel 'nope:x')")
    reader = await connect(
        secured.ws_url("/ws/news:today"),
        additional_headers={"Authorization": f"Bearer {token('alice')}"},
    )
    writer = await connect(
        secured.ws_url("/ws/chat:lobby"),
        additional_headers={"Cookie": f"pushwire_token={token('bob')}"},
    )
    chatter = await connect(secured.ws_url("/ws/chat:lobby?token=" + token("carol")))
    api(secured, "/api/publish/news:today", b"headline")
    assert await asyncio.wait_for(reader.recv(), WAIT) == "headline"
    await writer.send("hello from bob")  # a member (raw /ws/<channel> subscribes) may publish
    assert await asyncio.wait_for(chatter.recv(), WAIT) == "hello from bob"
    await reader.send("a reader's frame")  # news: nobody but the server publishes
    assert await closed_with(reader) == (4101, "only the server publishes to 'news:today'")
    for ws in (writer, chatter):
        await ws.close()


async def test_the_v1_channel_endpoint_checks_its_channel(secured: ServerProcess) -> None:
    ws = await connect(secured.ws_url("/ws/dm:alice,bob"), subprotocols=PUSHWIRE_V1)
    await ws.send(json.dumps({"type": "hello", "token": token("carol")}))
    await envelope(ws, "welcome")
    refused = await envelope(ws, "error")
    assert refused["code"] == "forbidden"
    assert (await closed_with(ws))[0] == 4101


def sse_status(server: ServerProcess, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    first = response.read(5) if response.status == 200 else response.read()
    conn.close()
    return response.status, first


def test_raw_sse_refuses_with_a_status_before_any_event(secured: ServerProcess) -> None:
    assert sse_status(secured, "/sse/news:today", {}) == (
        401,
        b"a connection token is required\n",
    )
    bearer = {"Authorization": f"Bearer {token('carol')}"}
    status, body = sse_status(secured, "/sse/dm:alice,bob", bearer)
    assert (status, body) == (403, b"'dm:alice,bob' is for the users its name lists\n")
    assert sse_status(secured, "/sse/news:today", bearer) == (200, b"retry")


# -- the TCP port --------------------------------------------------------------------------------


def test_the_tcp_port_asks_the_same_questions(secured: ServerProcess) -> None:
    anonymous = TcpClient(secured)
    anonymous.send({"type": "hello", "user": "alice"})
    assert anonymous.next("error")["code"] == "unauthorized"
    assert anonymous.next("close")["code"] == 4102
    anonymous.close()
    client = TcpClient(secured)
    assert client.hello(token=token("alice"))["user"] == "alice"
    client.send({"type": "subscribe", "id": 1, "channel": "nope:x"})
    assert client.next("error")["code"] == "forbidden"
    client.send({"type": "subscribe", "id": 2, "channel": "chat:lobby"})
    assert client.next("subscribed")["channel"] == "chat:lobby"
    client.close()


# -- the HTTP API ----------------------------------------------------------------------------------


def test_the_api_needs_its_key(secured: ServerProcess) -> None:
    assert api(secured, "/api/publish/chat:lobby", key=None) == (
        401,
        b"missing or wrong API key (Authorization: Bearer <key>)\n",
    )
    assert api(secured, "/api/send/alice", key="wrong")[0] == 401
    assert api(secured, "/api/publish/nope:x")[0] == 403  # the server too: configured only
    assert api(secured, "/api/publish/news:today")[0] == 200
    assert api(secured, "/api/send/alice")[0] == 200


def test_pushwire_publish_sends_the_api_key(secured: ServerProcess) -> None:
    command = [sys.executable, "-m", "pushwire", "publish", secured.url(""), "news:today", "x"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert "401 missing or wrong API key" in refused.stderr
    env = {**os.environ, "PUSHWIRE_API_KEY": API_KEY}
    published = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["channel"] == "news:today"


def test_a_server_with_tokens_and_no_api_key_has_no_api(server_factory: ServerFactory) -> None:
    server = server_factory("--jwt-secret", SECRET)
    assert api(server, "/api/publish/chat:lobby", key="anything") == (
        403,
        b"the HTTP API is off: the server has no API key\n",
    )


def test_an_open_server_on_another_address_refuses_to_start(
    server_factory: ServerFactory,
) -> None:
    with pytest.raises(RuntimeError) as failed:
        server_factory("--host", "0.0.0.0")
    output = str(failed.value)
    assert "0.0.0.0 is not a loopback address and no authentication is configured" in output
    assert "Traceback" not in output


# -- the log ---------------------------------------------------------------------------------------


async def test_refusals_are_logged_a_burst_at_most_and_no_token_or_secret_ever(
    server_factory: ServerFactory,
) -> None:
    """A flood of refusals at debug level: a burst of lines, the rest counted; and none of the
    credentials shown (tokens, an API key, a session's resume secret) appears in the log."""
    server = server_factory("--jwt-secret", SECRET, "--api-key", API_KEY, "--log-level", "debug")
    started = time.monotonic()
    valid = token("alice")
    ws = await v1(server, token=valid)
    welcome = await envelope(ws, "welcome")
    shown = [valid, API_KEY, welcome["resume"]]
    floods = 60
    for index in range(floods):
        bad = jwt.encode({"sub": f"mallory{index}"}, "a wrong secret that is long enough, too")
        shown.append(bad)
        refused = await v1(server, token=bad)
        assert (await closed_with(refused))[0] == 4102
    # A stolen session id, a wrong secret: a new session, the old one untouched.
    thief = await v1(server, token=token("mallory"), session=welcome["session"], resume="guess1")
    assert (await envelope(thief, "welcome"))["expired"] == welcome["session"]
    await thief.close()
    forged_key = "a-forged-api-key-never-logged"
    assert (await asyncio.to_thread(api, server, "/api/send/alice", key=forged_key))[0] == 401
    sse_token = jwt.encode({"sub": "eve"}, "yet another wrong secret, long enough")
    bearer = {"Authorization": f"Bearer {sse_token}"}
    assert (await asyncio.to_thread(sse_status, server, "/sse/x?token=" + sse_token, bearer))[
        0
    ] == 401
    shown += ["guess1", forged_key, sse_token]
    await ws.close()
    elapsed = time.monotonic() - started
    assert server.stop() == 0
    log = b"".join(server.output).decode()
    refusals = [line for line in log.splitlines() if " refused " in line]
    # 20 at once, then one a second (docs/security.md): far fewer than the 63 refusals.
    assert 1 <= len(refusals) <= 20 + int(elapsed) + 1, refusals
    for secret in shown:
        assert secret not in log
