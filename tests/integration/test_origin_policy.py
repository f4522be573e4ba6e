"""The Origin policy and the allowed hosts on raw sockets: the userinfo trick is refused on
every door, and a Host the server does not serve (DNS rebinding) is refused before routing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.parse

import pytest

from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HELLO = urllib.parse.quote('{"type":"hello","user":"alice"}')
USERINFO_TRICK = "http://localhost:x@evil.example"
ENDPOINTS = ("/pushwire", "/echo", "/ws/room")
STREAMS = ("stream", "sse", "iframe")
POLLS = ("longpoll", "polling")


def exchange(
    server: ServerProcess, head: str, body: bytes = b""
) -> tuple[str, dict[str, str], bytes]:
    """Send one request; return its answer's status line, headers (lower-case names) and
    body (by Content-Length: an answer that streams returns its head only)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before an answer: {data!r}"
            data += chunk
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
        return lines[0], headers, rest[:length]


def upgrade(path: str, host: str, origin: str | None = None) -> str:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: pushwire.v1",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return "\n".join(lines) + "\n"


def get(target: str, host: str, *extra: str, method: str = "GET") -> str:
    return "\n".join([f"{method} {target} HTTP/1.1", f"Host: {host}", *extra]) + "\n"


def post(target: str, host: str, body: bytes, *extra: str) -> tuple[str, bytes]:
    head = get(target, host, f"Content-Length: {len(body)}", *extra, method="POST")
    return head, body


def stats(server: ServerProcess) -> dict[str, int]:
    status, _, body = exchange(server, get("/api/stats", f"127.0.0.1:{server.port}"))
    assert status == "HTTP/1.1 200 OK"
    counters: dict[str, int] = json.loads(body)
    return counters


# -- the userinfo trick --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/pushwire", "/ws/room"])
@pytest.mark.parametrize(
    "origin",
    [
        USERINFO_TRICK,
        "http://localhost@evil.example",
        "http://127.0.0.1:8000@evil.example",
        "http://[::1]@evil.example",
        "http://localhost:x@evil.example:8000",
    ],
)
def test_an_upgrade_with_the_userinfo_trick_gets_403(
    server: ServerProcess, path: str, origin: str
) -> None:
    status, _, body = exchange(server, upgrade(path, f"127.0.0.1:{server.port}", origin))
    assert status == "HTTP/1.1 403 Forbidden"
    assert body == f"origin {origin!r} is not allowed\n".encode()


@pytest.mark.parametrize("kind", STREAMS + POLLS)
def test_an_http_transport_request_with_the_userinfo_trick_gets_403(
    server: ServerProcess, kind: str
) -> None:
    target = f"/pushwire/{kind}?hello={HELLO}"
    if kind == "iframe":
        target += "&origin=" + urllib.parse.quote("http://localhost:1")
    host = f"127.0.0.1:{server.port}"
    status, headers, body = exchange(server, get(target, host, f"Origin: {USERINFO_TRICK}"))
    assert status == "HTTP/1.1 403 Forbidden"
    assert "access-control-allow-origin" not in headers
    assert json.loads(body) == {
        "type": "error",
        "code": "forbidden",
        "message": f"origin {USERINFO_TRICK!r} is not allowed",
    }
    assert stats(server)["sessions"] == 0


@pytest.mark.parametrize(
    "target",
    [
        USERINFO_TRICK,
        "http://localhost:x@127.0.0.1",
        "http://localhost/",
        "http://localhost:1/?x",
        "javascript://localhost",
        "null",
        "*",
        "",
    ],
)
def test_the_iframe_posts_to_no_origin_the_policy_does_not_allow(
    server: ServerProcess, target: str
) -> None:
    query = f"hello={HELLO}&origin={urllib.parse.quote(target)}"
    status, _, body = exchange(server, get(f"/pushwire/iframe?{query}", f"127.0.0.1:{server.port}"))
    assert status == "HTTP/1.1 403 Forbidden"
    assert json.loads(body)["message"] == f"origin {target!r} is not allowed"
    assert stats(server)["sessions"] == 0


def test_the_iframe_posts_to_the_origin_as_parsed(server: ServerProcess) -> None:
    query = f"hello={HELLO}&origin={urllib.parse.quote('HTTP://LocalHost:80')}"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(get(f"/pushwire/iframe?{query}", "127.0.0.1").encode().replace(b"\n", b"\r\n"))
        sock.sendall(b"\r\n")
        data = b""
        while b"function p(m)" not in data:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'var o="http://localhost";' in data


def test_the_publish_api_refuses_the_userinfo_trick(server: ServerProcess) -> None:
    head, body = post(
        "/api/publish/room", f"127.0.0.1:{server.port}", b"hi", f"Origin: {USERINFO_TRICK}"
    )
    status, headers, answer = exchange(server, head, body)
    assert status == "HTTP/1.1 403 Forbidden"
    assert answer == f"origin {USERINFO_TRICK!r} is not allowed\n".encode()
    assert "access-control-allow-origin" not in headers
    assert stats(server)["published"] == 0


# -- allowed hosts -----------------------------------------------------------------------------


def refused_host_requests(port: int) -> list[tuple[str, bytes]]:
    """One request of each door with `Host: evil.example:<port>`, the name a rebinding
    attacker's page has (its Origin is then its own: the Host is all that tells)."""
    host = f"evil.example:{port}"
    own = f"Origin: http://{host}"
    requests: list[tuple[str, bytes]] = []
    for path in ENDPOINTS:
        requests.append((upgrade(path, host, f"http://{host}"), b""))
        for kind in STREAMS + POLLS:
            origin = "&origin=" + urllib.parse.quote(f"http://{host}") if kind == "iframe" else ""
            requests.append((get(f"{path}/{kind}?hello={HELLO}{origin}", host, own), b""))
        requests.append((get(f"{path}/polling?session=x&cursor=0", host, own), b""))
        requests.append(post(f"{path}/send?session=x", host, b"{}", own))
        requests.append((get(f"{path}/longpoll", host, own, method="OPTIONS"), b""))
    requests.append((get("/sse/room", host, own), b""))
    requests.append(post("/api/publish/room", host, b"hi", own))
    requests.append(post("/api/send/alice", host, b"hi", own))
    requests.append((get("/api/stats", host), b""))
    for path in ("/", "/pushwire.js", "/pushwire.mjs", "/lab", "/static/chat.js", "/healthz"):
        requests.append((get(path, host), b""))
    requests.append((get("/nowhere", host), b""))
    return requests


def test_every_door_refuses_a_host_it_does_not_serve_with_421(server: ServerProcess) -> None:
    for head, body in refused_host_requests(server.port):
        status, headers, answer = exchange(server, head, body)
        assert status == "HTTP/1.1 421 Misdirected Request", head
        message = f"host 'evil.example:{server.port}' is not served here"
        target = head.split()[1]
        if "/pushwire/" in target or "/echo/" in target or "/ws/room/" in target:
            assert json.loads(answer) == {
                "type": "error",
                "code": "misdirected",
                "message": message,
            }
        else:
            assert answer == (message + "\n").encode(), head
        assert "access-control-allow-origin" not in headers
        assert "sec-websocket-accept" not in headers
    counters = stats(server)
    assert (counters["sessions"], counters["published"], counters["deliveries"]) == (0, 0, 0)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "EVIL.example:80",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "localhost@evil.example",
        "xn--bcher-kva.example",
        "127.0.0.2",
        "",
        "localhost:x",
    ],
)
def test_a_host_that_is_not_served_gets_421(server: ServerProcess, host: str) -> None:
    status, _, body = exchange(server, get("/healthz", host))
    assert status == "HTTP/1.1 421 Misdirected Request"
    assert body == f"host {host!r} is not served here\n".encode()


@pytest.mark.parametrize("host", ["127.0.0.1", "LOCALHOST:1", "[::1]:8000", "[0::1]"])
def test_loopback_names_are_served_on_any_port(server: ServerProcess, host: str) -> None:
    assert exchange(server, get("/healthz", host))[0] == "HTTP/1.1 200 OK"


def test_a_request_without_host_is_not_a_browsers_and_is_served(server: ServerProcess) -> None:
    assert exchange(server, "GET /healthz HTTP/1.0\n")[0] == "HTTP/1.0 200 OK"


def test_allow_host_serves_a_name_and_its_own_origin(server_factory: ServerFactory) -> None:
    server = server_factory("--allow-host", "Chat.Example.com", "--allow-host", "bücher.example")
    assert exchange(server, get("/healthz", "chat.example.com:8000"))[0] == "HTTP/1.1 200 OK"
    assert exchange(server, get("/healthz", "xn--bcher-kva.example"))[0] == "HTTP/1.1 200 OK"
    assert exchange(server, get("/healthz", "127.0.0.1"))[0] == "HTTP/1.1 200 OK"
    own = "chat.example.com:8080"
    status, headers, _ = exchange(server, upgrade("/pushwire", own, f"https://{own}"))
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["sec-websocket-protocol"] == "pushwire.v1"
    assert exchange(server, get("/healthz", "evil.example"))[0].endswith("421 Misdirected Request")


def test_allow_host_star_serves_any_host(server_factory: ServerFactory) -> None:
    server = server_factory("--allow-host", "*")
    assert exchange(server, get("/healthz", "evil.example"))[0] == "HTTP/1.1 200 OK"
    # Every Host served, the Origin still decides: a page of evil.example on its own origin.
    status, _, _ = exchange(server, upgrade("/pushwire", "evil.example", "http://evil.example"))
    assert status == "HTTP/1.1 101 Switching Protocols"
    status, _, _ = exchange(server, upgrade("/pushwire", "127.0.0.1", "http://evil.example"))
    assert status == "HTTP/1.1 403 Forbidden"


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--allow-origin",
            USERINFO_TRICK,
            f"allowed origin {USERINFO_TRICK!r}: an origin has no user name or password",
        ),
        (
            "--allow-origin",
            "https://app.example/chat",
            "allowed origin 'https://app.example/chat': an origin has no path, query or fragment",
        ),
        (
            "--allow-origin",
            "app.example",
            "allowed origin 'app.example': scheme '' is not http or https",
        ),
        ("--allow-host", "evil.example/x", "allowed host 'evil.example/x': not host[:port]"),
    ],
)
def test_a_bad_allowed_origin_or_host_stops_the_server_with_one_line(
    flag: str, value: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", "serve", "--port", "0", flag, value],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode() == f"pushwire serve: {message}\n"
