"""Per-client limits on a real server: sessions per address, in all and per user,
handshakes a second per address, messages and bytes a second per session, the length of a
user id and of a request id, the API's calls per address, X-Forwarded-For from trusted
proxies only. Each at its bound and one over. 127.0.0.2 plays the attacker, 127.0.0.1 the
legitimate client (and the trusted proxy where one is needed)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.helpers import PUSHWIRE_V1
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import TcpClient

pytestmark = pytest.mark.integration

ATTACKER = "127.0.0.2"
LEGIT = "127.0.0.1"
WAIT = 10.0


def _socket(server: ServerProcess, source: str, port: int | None = None) -> socket.socket:
    return socket.create_connection((server.host, port or server.port), WAIT, (source, 0))


def _ws(
    server: ServerProcess, source: str, path: str = "/pushwire", *, v1: bool = True
) -> ClientConnection:
    """A WebSocket from `source` (raises `InvalidStatus` when the upgrade is refused)."""
    return connect(
        server.ws_url(path),
        sock=_socket(server, source),
        subprotocols=PUSHWIRE_V1 if v1 else None,
        open_timeout=WAIT,
        close_timeout=WAIT,
    )


def _recv(ws: ClientConnection) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(ws.recv(WAIT))
    return envelope


def _hello(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    ws.send(json.dumps({"type": "hello", **fields}))
    return _recv(ws)


def _close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(WAIT)
    return ws.close_code


def _request(
    server: ServerProcess,
    source: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    conn.sock = _socket(server, source)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    conn.close()
    return answer


def _poll_hello(server: ServerProcess, source: str, **headers: str) -> tuple[int, dict[str, str]]:
    status, head, _ = _request(
        server, source, "POST", "/pushwire/polling", b'{"type":"hello"}', headers
    )
    return status, head


@pytest.fixture
def sockets() -> Iterator[list[ClientConnection]]:
    held: list[ClientConnection] = []
    yield held
    for ws in held:
        ws.close()


def test_an_attacker_address_cannot_starve_another(
    server_factory: ServerFactory, sockets: list[ClientConnection]
) -> None:
    """An attacker on 127.0.0.2 fills its connections, sessions and handshakes; /healthz
    and a client on 127.0.0.1 are served all along."""
    server = server_factory(
        "--set",
        "max_connections_per_ip=4",
        "--set",
        "max_sessions_per_ip=3",
        "--set",
        "handshakes_per_ip=0.001",
        "--set",
        "handshake_burst=6",
    )
    for _ in range(3):  # its sessions, at the bound (3 connections, 3 handshakes)
        ws = _ws(server, ATTACKER)
        sockets.append(ws)
        assert _hello(ws)["type"] == "welcome"
    # Its 4th connection, at the bound: a keep-alive one for its polling hellos.
    polls = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    polls.sock = _socket(server, ATTACKER)

    def poll_hello() -> tuple[int, str | None]:
        polls.request("POST", "/pushwire/polling", b'{"type":"hello"}')
        response = polls.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After")

    assert poll_hello() == (503, "5")  # a 4th session (handshake 4)
    assert poll_hello() == (503, "5")  # handshake 5
    assert poll_hello() == (503, "5")  # handshake 6: the burst
    status, retry_after = poll_hello()  # handshake 7: over
    assert status == 429 and retry_after is not None and int(retry_after) > 1
    over = _socket(server, ATTACKER)  # a 5th connection: 503 and closed
    assert over.recv(65536).startswith(b"HTTP/1.1 503 ")
    over.close()

    status, _, body = _request(server, LEGIT, "GET", "/healthz")
    assert (status, body) == (200, b"ok\n")
    legit = _ws(server, LEGIT)
    sockets.append(legit)
    assert _hello(legit)["type"] == "welcome"
    legit.send(json.dumps({"type": "subscribe", "id": 1, "channel": "news"}))
    assert _recv(legit)["type"] == "subscribed"
    status, _, _ = _request(server, LEGIT, "POST", "/api/publish/news", b"still here")
    assert status == 200
    message = _recv(legit)
    assert (message["type"], message["data"]) == ("message", "still here")
    polls.close()


def test_sessions_per_address_free_up_when_sessions_end(
    server_factory: ServerFactory, sockets: list[ClientConnection]
) -> None:
    server = server_factory("--set", "max_sessions_per_ip=2")
    first, second = _ws(server, ATTACKER), _ws(server, ATTACKER)
    sockets += [first, second]
    assert _hello(first)["type"] == _hello(second)["type"] == "welcome"  # at the bound
    stream = "/pushwire/stream?hello=" + urllib.parse.quote('{"type":"hello"}')
    status, head, body = _request(server, ATTACKER, "GET", stream)  # one over
    assert status == 503 and head["Retry-After"] == "5"
    assert json.loads(body)["code"] == "limit"
    third = _ws(server, ATTACKER)  # a WebSocket's hello comes after its upgrade
    sockets.append(third)
    error = _hello(third)
    assert (error["type"], error["code"]) == ("error", "limit")
    assert _close_code(third) == 4029
    first.send(json.dumps({"type": "close"}))  # the client ends its session
    assert _close_code(first) == 1000
    fourth = _ws(server, ATTACKER)
    sockets.append(fourth)
    assert _hello(fourth)["type"] == "welcome"


def test_a_client_at_its_bound_resumes_its_session(
    server_factory: ServerFactory, sockets: list[ClientConnection]
) -> None:
    """A session counts until it ends: coming back to it is not one more."""
    server = server_factory("--set", "max_sessions_per_ip=1")
    ws = _ws(server, LEGIT)
    welcome = _hello(ws)
    ws.socket.shutdown(socket.SHUT_RDWR)  # dropped, no Close: the session waits for it
    ws.socket.close()
    again = _ws(server, LEGIT)
    sockets.append(again)
    resumed = _hello(again, session=welcome["session"], resume=welcome["resume"])
    assert (resumed["type"], resumed["resumed"]) == ("welcome", True)
    assert _poll_hello(server, LEGIT)[0] == 503  # a new one is over the bound


def test_sessions_in_total(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "max_sessions=2")
    assert _poll_hello(server, ATTACKER)[0] == 200
    assert _poll_hello(server, LEGIT)[0] == 200  # at the bound
    status, head = _poll_hello(server, LEGIT)  # one over, from any address
    assert status == 503 and head["Retry-After"] == "5"


def test_sessions_per_user(server_factory: ServerFactory, sockets: list[ClientConnection]) -> None:
    server = server_factory("--set", "max_sessions_per_user=2")
    for _ in range(2):  # at the bound
        ws = _ws(server, LEGIT)
        sockets.append(ws)
        assert _hello(ws, user="ann")["type"] == "welcome"
    over = _ws(server, LEGIT)  # one over
    sockets.append(over)
    error = _hello(over, user="ann")
    assert (error["type"], error["code"]) == ("error", "limit")
    assert _close_code(over) == 4029
    bob = _ws(server, LEGIT)
    sockets.append(bob)
    assert _hello(bob, user="bob")["type"] == "welcome"


def test_handshakes_per_address(server_factory: ServerFactory) -> None:
    server = server_factory(
        "--tcp-port", "0", "--set", "handshakes_per_ip=0.001", "--set", "handshake_burst=2"
    )
    assert _poll_hello(server, ATTACKER)[0] == 200
    assert _poll_hello(server, ATTACKER)[0] == 200  # at the bound
    status, head = _poll_hello(server, ATTACKER)  # one over
    assert status == 429 and int(head["Retry-After"]) > 1
    assert _poll_hello(server, LEGIT)[0] == 200  # another address has its own
    # The TCP port has no HTTP door: its hello is the handshake.
    assert server.tcp_port is not None
    client = TcpClient(server)
    client.sock.close()
    client.sock = _socket(server, ATTACKER, server.tcp_port)
    client.send({"type": "hello"})
    error = client.next("error")
    assert error["code"] == "rate_limited"
    assert client.next("close")["code"] == 4029
    client.close()


def test_messages_per_session(
    server_factory: ServerFactory, sockets: list[ClientConnection]
) -> None:
    server = server_factory(
        "--set",
        "messages_per_second=0.001",
        "--set",
        "message_burst=4",
        "--set",
        "rate_limit_strikes=2",
    )
    ws = _ws(server, LEGIT, "/echo")
    sockets.append(ws)
    assert _hello(ws)["type"] == "welcome"  # the hello is the first message
    for text in ("a", "b", "c"):  # at the bound
        ws.send(json.dumps({"type": "send", "data": text}))
        assert _recv(ws)["data"] == text
    for _ in range(2):  # over: dropped, the client is told
        ws.send(json.dumps({"type": "send", "data": "dropped"}))
        error = _recv(ws)
        assert (error["type"], error["code"]) == ("error", "rate_limited")
    ws.send(json.dumps({"type": "send", "data": "dropped"}))  # it keeps on: closed
    assert _close_code(ws) == 4029
    # Raw mode has no error frame: closed at the first message over.
    raw = _ws(server, LEGIT, "/ws/room", v1=False)
    sockets.append(raw)
    for _ in range(4):
        raw.send("x")
    raw.send("x")
    assert _close_code(raw) == 4029


def test_bytes_per_session(server_factory: ServerFactory, sockets: list[ClientConnection]) -> None:
    server = server_factory(
        "--set",
        "bytes_per_second=0.001",
        "--set",
        "max_message=100",
        "--set",
        "byte_burst=100",
    )
    raw = _ws(server, LEGIT, "/echo", v1=False)
    sockets.append(raw)
    raw.send("x" * 60)
    raw.send("x" * 40)  # at the bound: 100 bytes
    assert raw.recv(WAIT) == "x" * 60 and raw.recv(WAIT) == "x" * 40
    raw.send("x")  # one over
    assert _close_code(raw) == 4029


def test_user_id_length(server_factory: ServerFactory, sockets: list[ClientConnection]) -> None:
    server = server_factory("--set", "max_user_id=16")
    ws = _ws(server, LEGIT)
    sockets.append(ws)
    assert _hello(ws, user="u" * 16)["user"] == "u" * 16  # at the bound
    over = _ws(server, LEGIT)
    sockets.append(over)
    error = _hello(over, user="u" * 17)  # one over
    assert (error["type"], error["code"]) == ("error", "too_large")
    assert error["message"] == "user id over size limit (17 > 16 characters)"
    assert _close_code(over) == 4100
    status, _, body = _request(server, LEGIT, "GET", "/sse/room?user=" + "u" * 17)
    assert (status, body) == (400, b"user id over size limit (17 > 16 characters)\n")


def test_the_presence_amplification_finding_is_bounded_by_the_user_id(
    server_factory: ServerFactory, sockets: list[ClientConnection]
) -> None:
    """Issue 15: ten 1 MB user ids made one 49-byte `presence` request return 10 MB. Now ten
    members with user ids at `max_user_id` (256, the default) answer in a few KiB, and a
    user id one over is refused at its hello."""
    server = server_factory()
    for _ in range(10):  # at the bound
        member = _ws(server, LEGIT)
        sockets.append(member)
        assert _hello(member, user="u" * 256)["type"] == "welcome"
        member.send(json.dumps({"type": "subscribe", "id": 1, "channel": "room"}))
        assert _recv(member)["type"] == "subscribed"
    asker = sockets[0]
    request = json.dumps({"type": "presence", "id": 2, "channel": "room"})
    asker.send(request)
    answer: str | bytes = asker.recv(WAIT)
    assert json.loads(answer)["count"] == 10
    assert len(answer) < 10 * (256 + 200) and len(request) < 60
    over = _ws(server, LEGIT)
    sockets.append(over)
    error = _hello(over, user="u" * 1_000_000)  # one over (by far, as in the finding)
    assert (error["type"], error["code"]) == ("error", "too_large")
    assert len(json.dumps(error)) < 200
    assert _close_code(over) == 4100


def test_an_error_never_echoes_a_long_input(
    server: ServerProcess, sockets: list[ClientConnection]
) -> None:
    """Issue 15: a 999,900-character channel name came back in a 1 MB error. A channel name
    at `max_channel_name` (200) is taken; one over, and one of 999,900 characters, get an
    error of a few dozen characters that quotes 40 of them."""
    ws = _ws(server, LEGIT)
    sockets.append(ws)
    assert _hello(ws)["type"] == "welcome"
    ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": "c" * 200}))  # at the bound
    assert _recv(ws)["type"] == "subscribed"
    for length in (201, 999_900):  # one over, and the finding's
        ws.send(json.dumps({"type": "subscribe", "id": 2, "channel": "c" * length}))
        error = _recv(ws)
        assert (error["type"], error["code"]) == ("error", "bad_request")
        assert f"({length} characters)" in error["message"]
        assert len(json.dumps(error)) < 200


def test_request_id_length(server_factory: ServerFactory, sockets: list[ClientConnection]) -> None:
    server = server_factory("--set", "max_request_id=8")
    ws = _ws(server, LEGIT)
    sockets.append(ws)
    assert _hello(ws)["type"] == "welcome"
    ws.send(json.dumps({"type": "subscribe", "id": "12345678", "channel": "a"}))
    assert _recv(ws)["id"] == "12345678"  # at the bound: echoed
    for bad in ("123456789", 2**53 + 1, {"nested": "x" * 1000}, [1], True):  # over
        ws.send(json.dumps({"type": "subscribe", "id": bad, "channel": "b"}))
        error = _recv(ws)
        assert (error["type"], error["code"]) == ("error", "bad_request")
        assert "id" not in error and len(json.dumps(error)) < 200
    ws.send(json.dumps({"type": "subscribe", "id": 2**53, "channel": "c"}))
    assert _recv(ws)["id"] == 2**53  # the connection carries on


def test_a_hello_echoes_no_long_session_id(
    server: ServerProcess, sockets: list[ClientConnection]
) -> None:
    """An unknown session id comes back in the welcome (`expired`): bounded too."""
    ws = _ws(server, LEGIT)
    sockets.append(ws)
    welcome = _hello(ws, session="s" * 128, resume="x")  # at the bound: echoed
    assert (welcome["type"], welcome["expired"]) == ("welcome", "s" * 128)
    over = _ws(server, LEGIT)
    sockets.append(over)
    error = _hello(over, session="s" * 129, resume="x")  # one over: refused, not echoed
    assert (error["type"], error["code"]) == ("error", "bad_request")
    assert len(json.dumps(error)) < 200


def test_api_calls_per_address(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "api_requests_per_ip=0.001", "--set", "api_burst=2")
    for _ in range(2):  # at the bound
        assert _request(server, ATTACKER, "POST", "/api/publish/a", b"x")[0] == 200
    status, head, _ = _request(server, ATTACKER, "POST", "/api/publish/a", b"x")  # one over
    assert status == 429 and int(head["Retry-After"]) > 1
    assert _request(server, LEGIT, "POST", "/api/publish/a", b"x")[0] == 200


def test_forwarded_for_is_read_from_trusted_proxies_only(server_factory: ServerFactory) -> None:
    server = server_factory("--trust-proxy", "127.0.0.2/32", "--set", "max_sessions_per_ip=1")
    # Through the trusted proxy (127.0.0.2): each forwarded client has its own bound.
    assert _poll_hello(server, ATTACKER, **{"X-Forwarded-For": "203.0.113.1"})[0] == 200
    assert _poll_hello(server, ATTACKER, **{"X-Forwarded-For": "203.0.113.2"})[0] == 200
    forged = {"X-Forwarded-For": "203.0.113.9, 203.0.113.1"}  # the client wrote the left one
    assert _poll_hello(server, ATTACKER, **forged)[0] == 503
    # From anyone else the header is ignored: the peer is the client.
    assert _poll_hello(server, LEGIT, **{"X-Forwarded-For": "203.0.113.3"})[0] == 200
    assert _poll_hello(server, LEGIT, **{"X-Forwarded-For": "203.0.113.4"})[0] == 503


def test_ipv6_clients_are_counted_by_their_64(server_factory: ServerFactory) -> None:
    """One holder of a /64 is one client: its addresses share `max_sessions_per_ip`
    (IPv6 through a trusted proxy on loopback; `per_ip_ipv6_prefix`)."""
    server = server_factory("--trust-proxy", "127.0.0.2/32", "--set", "max_sessions_per_ip=2")

    def hello(client: str) -> int:
        return _poll_hello(server, ATTACKER, **{"X-Forwarded-For": client})[0]

    assert hello("2001:db8:1:2::1") == 200
    assert hello("2001:db8:1:2:ffff::2") == 200  # the same /64: at the bound
    assert hello("2001:db8:1:2::3") == 503  # one over, from another address of it
    assert hello("2001:db8:1:3::1") == 200  # the next /64 is another client
    assert hello("::ffff:203.0.113.5") == 200  # IPv4-mapped: counted as 203.0.113.5
    assert hello("203.0.113.5") == 200
    assert hello("::ffff:203.0.113.5") == 503
    single = server_factory(
        "--trust-proxy", "127.0.0.2/32", "--set", "max_sessions_per_ip=1",
        "--set", "per_ip_ipv6_prefix=128",
    )  # fmt: skip
    for client in ("2001:db8:1:2::1", "2001:db8:1:2::2"):  # each address alone
        assert _poll_hello(single, ATTACKER, **{"X-Forwarded-For": client})[0] == 200


def test_exempt_addresses(server_factory: ServerFactory) -> None:
    server = server_factory("--limit-exempt", "127.0.0.2", "--set", "max_sessions_per_ip=1")
    for _ in range(3):
        assert _poll_hello(server, ATTACKER)[0] == 200
    assert _poll_hello(server, LEGIT)[0] == 200
    assert _poll_hello(server, LEGIT)[0] == 503
