"""The RFC 6455 opening handshake over raw sockets: accept key, refusals, Origin, subprotocols."""

from __future__ import annotations

import base64
import hashlib
import socket

import pytest

from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def handshake(
    server: ServerProcess,
    path: str = "/echo",
    *,
    drop: tuple[str, ...] = (),
    **overrides: str,
) -> tuple[str, dict[str, str], bytes]:
    """Send an upgrade request; return the status line, headers (lower-case names) and body."""
    headers = {
        "Host": f"{server.host}:{server.port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": SAMPLE_KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in overrides.items():
        headers[name.replace("_", "-")] = value
    for name in drop:
        del headers[name]
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(request.encode() + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        length = int(parsed.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
        return lines[0], parsed, body


def test_the_rfc_sample_key_gives_the_rfc_accept_value(server: ServerProcess) -> None:
    status, headers, _ = handshake(server)
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["upgrade"].lower() == "websocket"
    assert headers["connection"].lower() == "upgrade"
    assert "sec-websocket-protocol" not in headers


def test_the_seed_article_key_gets_the_accept_value_rfc_6455_defines(server: ServerProcess) -> None:
    # The seed article prints "HSmrc0sMlYUkAGmm5OPpG2HaGwk=" for this key: one letter is off
    # (a lower-case w). RFC 6455 4.2.2 defines the value as below, and browsers check it.
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    expected = base64.b64encode(digest).decode()
    assert expected == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
    status, headers, _ = handshake(server, Sec_WebSocket_Key=key)
    assert status.startswith("HTTP/1.1 101")
    assert headers["sec-websocket-accept"] == expected


def test_a_wrong_version_gets_426_with_the_supported_version(server: ServerProcess) -> None:
    status, headers, body = handshake(server, Sec_WebSocket_Version="8")
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["sec-websocket-version"] == "13"
    assert b"unsupported Sec-WebSocket-Version 8: only 13 is supported" in body


def test_a_missing_version_gets_426(server: ServerProcess) -> None:
    status, headers, _ = handshake(server, drop=("Sec-WebSocket-Version",))
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize(
    ("drop", "overrides", "reason"),
    [
        (("Sec-WebSocket-Key",), {}, b"missing or repeated Sec-WebSocket-Key header"),
        ((), {"Sec-WebSocket-Key": "c2hvcnQ="}, b"invalid Sec-WebSocket-Key 'c2hvcnQ='"),
        ((), {"Sec-WebSocket-Key": "not base64!!"}, b"invalid Sec-WebSocket-Key"),
        ((), {"Connection": "keep-alive"}, b"invalid Connection header: expected Upgrade"),
    ],
)
def test_a_bad_handshake_gets_400_with_the_reason(
    server: ServerProcess, drop: tuple[str, ...], overrides: dict[str, str], reason: bytes
) -> None:
    extra = {name.replace("-", "_"): value for name, value in overrides.items()}
    status, _, body = handshake(server, drop=drop, **extra)
    assert status == "HTTP/1.1 400 Bad Request"
    assert reason in body


def test_an_unknown_path_gets_404(server: ServerProcess) -> None:
    status, _, body = handshake(server, "/nowhere")
    assert status == "HTTP/1.1 404 Not Found"
    assert b"no WebSocket endpoint at /nowhere" in body


def test_an_invalid_channel_name_gets_400(server: ServerProcess) -> None:
    status, _, body = handshake(server, "/ws/bad%20name")
    assert status == "HTTP/1.1 400 Bad Request"
    assert b"invalid channel name 'bad name'" in body


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:3000", "http://127.0.0.1:9", "https://[::1]:8443", "http://localhost"],
)
def test_loopback_origins_are_allowed_on_channels(server: ServerProcess, origin: str) -> None:
    status, _, _ = handshake(server, "/ws/room", Origin=origin)
    assert status.startswith("HTTP/1.1 101")


def test_the_servers_own_origin_is_allowed(server_factory: ServerFactory) -> None:
    server = server_factory("--allow-host", "chat.example.com")
    status, _, _ = handshake(
        server, "/ws/room", Host="chat.example.com:8080", Origin="https://chat.example.com:8080"
    )
    assert status.startswith("HTTP/1.1 101")


def test_the_servers_own_origin_on_a_host_it_does_not_serve_is_misdirected(
    server: ServerProcess,
) -> None:
    # DNS rebinding: a page on evil.example, a name pointed at the server, is same-origin.
    status, _, body = handshake(
        server, "/ws/room", Host="evil.example:8080", Origin="http://evil.example:8080"
    )
    assert status == "HTTP/1.1 421 Misdirected Request"
    assert body == b"host 'evil.example:8080' is not served here\n"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://localhost.evil.example",
        "http://localhost:x@evil.example",
        "http://localhost/",
    ],
)
def test_foreign_origins_are_refused_with_403(server: ServerProcess, origin: str) -> None:
    status, _, body = handshake(server, "/ws/room", Origin=origin)
    assert status == "HTTP/1.1 403 Forbidden"
    assert f"origin {origin!r} is not allowed".encode() in body


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_the_echo_service_accepts_any_origin(server: ServerProcess, origin: str) -> None:
    status, _, _ = handshake(server, "/echo", Origin=origin)
    assert status.startswith("HTTP/1.1 101")


def test_allow_origin_adds_an_origin(server_factory: ServerFactory) -> None:
    server = server_factory("--allow-origin", "https://app.example")
    assert handshake(server, "/ws/room", Origin="https://app.example")[0].startswith("HTTP/1.1 101")
    assert handshake(server, "/ws/room", Origin="https://other.example")[0].endswith(
        "403 Forbidden"
    )


def test_allow_origin_star_allows_every_origin(server_factory: ServerFactory) -> None:
    server = server_factory("--allow-origin", "*")
    assert handshake(server, "/ws/room", Origin="https://any.example")[0].startswith("HTTP/1.1 101")


def test_pushwire_v1_is_chosen_when_offered(server: ServerProcess) -> None:
    _, headers, _ = handshake(server, Sec_WebSocket_Protocol="chat, pushwire.v1")
    assert headers["sec-websocket-protocol"] == "pushwire.v1"


def test_unknown_subprotocols_mean_raw_mode_without_the_header(server: ServerProcess) -> None:
    status, headers, _ = handshake(server, Sec_WebSocket_Protocol="chat, superchat")
    assert status.startswith("HTTP/1.1 101")
    assert "sec-websocket-protocol" not in headers


def test_app_subprotocols_are_chosen_by_server_preference(server_factory: ServerFactory) -> None:
    # The seed's request offers "chat, superchat"; the server prefers superchat.
    server = server_factory("--subprotocol", "superchat", "--subprotocol", "chat")
    _, headers, _ = handshake(server, Sec_WebSocket_Protocol="chat, superchat")
    assert headers["sec-websocket-protocol"] == "superchat"
    _, headers, _ = handshake(server, Sec_WebSocket_Protocol="chat")
    assert headers["sec-websocket-protocol"] == "chat"


def test_no_websocket_refuses_upgrades_but_serves_http_transports(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--no-websocket")
    status, _, body = handshake(server, "/pushwire")
    assert status == "HTTP/1.1 403 Forbidden"
    assert b"WebSocket is disabled on this server: use an HTTP transport" in body
    hello = "%7B%22type%22%3A%22hello%22%7D"
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            f"GET /pushwire/polling?hello={hello} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_a_path_accepted_before_still_has_each_handshake_checked(server: ServerProcess) -> None:
    """The server keeps the endpoint of a path it accepted (not the request's checks): the
    next handshake to it is checked in full, and a refused path is refused again."""
    status, _, _ = handshake(server, "/ws/room")
    assert status == "HTTP/1.1 101 Switching Protocols"
    status, _, body = handshake(server, "/ws/room", Host="elsewhere.example")
    assert status == "HTTP/1.1 421 Misdirected Request"
    status, _, body = handshake(server, "/ws/room", Sec_WebSocket_Version="8")
    assert status == "HTTP/1.1 426 Upgrade Required"
    for _ in range(2):
        status, _, body = handshake(server, "/ws/bad%20name")
        assert status == "HTTP/1.1 400 Bad Request"
        assert b"invalid channel name 'bad name'" in body
