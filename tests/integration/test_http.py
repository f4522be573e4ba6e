"""The HTTP/1.x layer of a real `pushwire serve` over raw sockets: persistence, pipelining,
bounds, timeouts, routes, the publish API and the `pushwire publish` CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from websockets.sync.client import connect as ws_connect

from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

TIMEOUT = 10.0  # every blocking read; a bound on the test, never a speed claim


class Response:
    def __init__(self, status: bytes, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Client:
    """A raw socket that reads whole responses, keeping any bytes that follow one."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed after {self.buffer!r}")
        self.buffer += data

    def response(self, *, head_only: bool = False) -> Response:
        """The next response; its body read by Content-Length (none for a HEAD request)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.decode("latin-1").partition(":")
            assert name.lower() not in headers, f"repeated header {name}"
            headers[name.lower()] = value.strip()
        assert "transfer-encoding" not in headers
        length = 0 if head_only else int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(status, headers, body)

    def closed(self) -> bool:
        """True when the server closes the connection (EOF) with nothing more sent."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return not self.buffer
        return data == b"" and not self.buffer


def get(path: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def publish(
    channel: str, body: bytes, *headers: str, content_type: str | None = "text/plain"
) -> bytes:
    lines = [f"POST /api/publish/{channel} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_still_serving(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(get("/healthz"))
        response = client.response()
        assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"ok\n")


def assert_refused(
    server: ServerProcess, request: bytes, status: bytes, message: bytes, *, closes: bool
) -> Response:
    """`request` gets `status` with `message`; the connection closes or stays usable; the
    server goes on serving fresh connections."""
    with Client(server) as client:
        client.send(request)
        response = client.response()
        assert response.status == status
        assert response.body == message
        if closes:
            assert response.headers["connection"] == "close"
            assert client.closed()
        else:
            assert "connection" not in response.headers
            client.send(get("/healthz"))
            assert client.response().status == b"HTTP/1.1 200 OK"
    assert_still_serving(server)
    return response


# -- persistence and pipelining ---------------------------------------------------------------


def test_http_10_without_keep_alive_is_answered_then_closed(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(get("/healthz", version="1.0"))
        response = client.response()
        assert response.status == b"HTTP/1.0 200 OK"
        assert response.headers["connection"] == "close"
        assert response.body == b"ok\n"
        assert client.closed()


def test_http_10_keep_alive_is_answered_with_a_length_and_serves_a_second_request(
    server: ServerProcess,
) -> None:
    with Client(server) as client:
        for _ in range(2):
            client.send(get("/healthz", "Connection: keep-alive", version="1.0"))
            response = client.response()
            assert response.status == b"HTTP/1.0 200 OK"
            assert response.headers["connection"] == "keep-alive"
            assert response.headers["content-length"] == "3"
            assert response.body == b"ok\n"


def test_http_11_keep_alive_serves_three_requests_on_one_socket(server: ServerProcess) -> None:
    with Client(server) as client:
        for path in ("/healthz", "/nowhere", "/healthz"):
            client.send(get(path))
            response = client.response()
            assert response.status.startswith(b"HTTP/1.1 ")
            assert "connection" not in response.headers
        client.send(get("/healthz"))
        assert client.response().body == b"ok\n"


def test_http_11_connection_close_is_honoured(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(get("/healthz", "Connection: close"))
        response = client.response()
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.headers["connection"] == "close"
        assert client.closed()


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    with Client(server) as client:
        # The publish is answered asynchronously; the requests after it must wait for it.
        client.send(
            publish("pipeline", b"first")
            + get("/nowhere")
            + get("/healthz")
            + get("/healthz", "Connection: close")
        )
        first = client.response()
        assert first.status == b"HTTP/1.1 200 OK"
        assert json.loads(first.body)["channel"] == "pipeline"
        assert client.response().status == b"HTTP/1.1 404 Not Found"
        assert client.response().body == b"ok\n"
        last = client.response()
        assert (last.body, last.headers["connection"]) == (b"ok\n", "close")
        assert client.closed()


def test_a_request_pipelined_before_a_malformed_one_is_answered_before_the_400(
    server: ServerProcess,
) -> None:
    with Client(server) as client:
        client.send(get("/healthz") + b"GARBAGE\r\n\r\n")
        assert client.response().body == b"ok\n"
        response = client.response()
        assert response.status == b"HTTP/1.1 400 Bad Request"
        assert response.body == b"malformed request: Invalid method encountered\n"
        assert client.closed()


# -- max_header_bytes --------------------------------------------------------------------------


def request_with_head_of(size: int) -> bytes:
    """A GET /healthz whose head (request line, headers, blank line) is `size` bytes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def test_a_head_just_under_max_header_bytes_is_answered(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "max_header_bytes=1000")
    with Client(server) as client:
        client.send(request_with_head_of(999))
        assert client.response().status == b"HTTP/1.1 200 OK"
        client.send(request_with_head_of(1000))
        assert client.response().status == b"HTTP/1.1 200 OK"


def test_a_head_over_max_header_bytes_gets_431_and_the_connection_closes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_header_bytes=1000")
    assert_refused(
        server,
        request_with_head_of(1001),
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"request head over size limit (1001 > 1000 bytes)\n",
        closes=True,
    )


# -- max_body_bytes ----------------------------------------------------------------------------


def test_a_body_just_under_max_body_bytes_is_published(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "max_body_bytes=1000")
    with Client(server) as client:
        for size in (999, 1000):
            client.send(publish("big", b"x" * size))
            response = client.response()
            assert response.status == b"HTTP/1.1 200 OK"
            assert json.loads(response.body)["channel"] == "big"


def test_a_body_over_max_body_bytes_gets_413_and_the_connection_closes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_body_bytes=1000")
    with Client(server) as client:
        client.send(publish("big", b"x" * 1001))
        response = client.response()
        # The reason phrase of 413 differs between Python versions; the code is the contract.
        assert response.status.startswith(b"HTTP/1.1 413 ")
        assert response.body == b"body over size limit (1001 > 1000 bytes)\n"
        assert response.headers["connection"] == "close"
        assert client.closed()
    assert_still_serving(server)


# -- header_timeout ----------------------------------------------------------------------------


def test_a_head_completed_within_header_timeout_is_answered(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "header_timeout=0.5")
    with Client(server) as client:
        client.send(b"GET /healthz HTTP/1.1\r\n")
        client.send(b"Host: 127.0.0.1\r\n\r\n")
        assert client.response().status == b"HTTP/1.1 200 OK"


def test_a_client_that_never_finishes_its_head_gets_408_and_is_closed(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "header_timeout=0.5")
    with Client(server) as client:
        started = time.monotonic()
        client.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing
        response = client.response()  # blocks until the server gives up
        assert response.status == b"HTTP/1.1 408 Request Timeout"
        assert response.body == b"request head not received within 0.5 s\n"
        assert response.headers["connection"] == "close"
        assert client.closed()
        assert time.monotonic() - started < TIMEOUT
    assert_still_serving(server)


def test_a_body_that_stops_arriving_gets_408_after_body_timeout(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        "--set", "body_timeout=0.5", "--set", "header_timeout=0.5", "--set", "keepalive_timeout=30"
    )
    with Client(server) as client:
        request = publish("slow", b"0123456789")
        client.send(request[:-5])  # the head and half the body, then nothing
        response = client.response()
        assert response.status == b"HTTP/1.1 408 Request Timeout"
        assert response.body == b"request body not received within 0.5 s\n"
        assert client.closed()


# -- keepalive_timeout -------------------------------------------------------------------------


def test_a_keep_alive_connection_used_again_within_keepalive_timeout_is_served(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "keepalive_timeout=0.5")
    with Client(server) as client:
        for _ in range(3):
            client.send(get("/healthz"))
            assert client.response().status == b"HTTP/1.1 200 OK"


def served_then_idle(client: Client) -> float:
    """Send a request, then wait idle: the seconds from its answer until the server closes."""
    client.send(get("/healthz"))
    assert client.response().status == b"HTTP/1.1 200 OK"
    answered = time.monotonic()
    assert client.closed()  # blocks until the server closes it
    return time.monotonic() - answered


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "keepalive_timeout=0.5")
    with Client(server) as client:
        assert served_then_idle(client) < TIMEOUT


# -- max_connections ---------------------------------------------------------------------------


def test_the_connection_past_max_connections_gets_503_while_the_others_are_served(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_connections=3")
    held = [Client(server) for _ in range(3)]
    try:
        for client in held:  # at the bound: each is accepted and served
            client.send(get("/healthz"))
            assert client.response().status == b"HTTP/1.1 200 OK"
        with Client(server) as extra:
            response = extra.response()
            assert response.status == b"HTTP/1.1 503 Service Unavailable"
            assert response.body == b"too many connections (> 3)\n"
            assert response.headers["connection"] == "close"
            assert extra.closed()
        for client in held:
            client.send(get("/healthz"))
            assert client.response().status == b"HTTP/1.1 200 OK"
    finally:
        for client in held:
            client.sock.close()


# -- routes --------------------------------------------------------------------------------------


def test_healthz_answers_200_ok(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(get("/healthz"))
        response = client.response()
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.body == b"ok\n"


def test_head_healthz_has_the_length_of_the_body_it_does_not_send(
    server: ServerProcess,
) -> None:
    with Client(server) as client:
        client.send(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + get("/nowhere"))
        head = client.response(head_only=True)
        assert head.status == b"HTTP/1.1 200 OK"
        assert head.headers["content-length"] == "3"
        # No body came: the next bytes are the next response.
        assert client.response().status == b"HTTP/1.1 404 Not Found"


def test_an_unknown_path_gets_404(server: ServerProcess) -> None:
    assert_refused(
        server,
        get("/nowhere"),
        b"HTTP/1.1 404 Not Found",
        b"no such path /nowhere\n",
        closes=False,
    )


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (
            b"DELETE /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"/healthz takes GET, not DELETE\n",
        ),
        (get("/api/publish/room"), b"/api/publish/room takes POST, not GET\n"),
    ],
)
def test_a_wrong_method_gets_405_with_an_allow_header(
    server: ServerProcess, request_bytes: bytes, message: bytes
) -> None:
    response = assert_refused(
        server, request_bytes, b"HTTP/1.1 405 Method Not Allowed", message, closes=False
    )
    assert "allow" in response.headers


def allowed(response: Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def test_the_allow_header_of_healthz_lists_get_and_head(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(b"DELETE /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert allowed(client.response()) == {"GET", "HEAD"}


def test_the_allow_header_of_the_publish_api_does_not_list_get(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(get("/api/publish/room"))
        methods = allowed(client.response())
        assert "POST" in methods
        assert "GET" not in methods


# -- the publish API -----------------------------------------------------------------------------


def test_a_channel_name_at_max_channel_name_is_published(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(publish("c" * 200, b"hi"))
        response = client.response()
        assert response.status == b"HTTP/1.1 200 OK"
        assert json.loads(response.body)["channel"] == "c" * 200


@pytest.mark.parametrize(
    ("channel", "shown"),
    [
        ("bad%20name", "'bad name'"),
        # What the client sent is quoted up to 40 characters: an error never grows with it.
        ("c" * 201, f"{'c' * 40!r}… (201 characters)"),
        ("room%2Fsub", "'room/sub'"),
    ],
)
def test_publishing_to_an_invalid_channel_name_gets_400(
    server: ServerProcess, channel: str, shown: str
) -> None:
    assert_refused(
        server,
        publish(channel, b"hi"),
        b"HTTP/1.1 400 Bad Request",
        f"invalid channel name {shown}\n".encode(),
        closes=False,
    )


def test_a_text_body_that_is_not_utf8_gets_400(server: ServerProcess) -> None:
    assert_refused(
        server,
        publish("room", b"hi\xff"),
        b"HTTP/1.1 400 Bad Request",
        b"body is not valid UTF-8 at byte 2; send binary as application/octet-stream\n",
        closes=False,
    )


def test_the_same_bytes_as_octet_stream_are_published_as_binary(server: ServerProcess) -> None:
    with ws_connect(server.ws_url("/ws/binary"), open_timeout=TIMEOUT) as subscriber:
        with Client(server) as client:
            client.send(publish("binary", b"hi\xff", content_type="application/octet-stream"))
            response = client.response()
            assert response.status == b"HTTP/1.1 200 OK"
            answer = json.loads(response.body)
            assert (answer["channel"], answer["offset"]) == ("binary", 1)
        assert subscriber.recv(timeout=TIMEOUT) == b"hi\xff"


def test_an_allowed_origin_may_publish(server: ServerProcess) -> None:
    with Client(server) as client:
        client.send(publish("room", b"hi", "Origin: http://localhost:3000"))
        response = client.response()
        assert response.status == b"HTTP/1.1 200 OK"
        assert json.loads(response.body)["channel"] == "room"


def test_the_publish_answer_to_an_allowed_origin_carries_cors_headers(
    server: ServerProcess,
) -> None:
    with Client(server) as client:
        client.send(publish("room", b"hi", "Origin: http://localhost:3000"))
        response = client.response()
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_a_foreign_origin_may_not_publish(server: ServerProcess) -> None:
    response = assert_refused(
        server,
        publish("room", b"hi", "Origin: http://evil.example"),
        b"HTTP/1.1 403 Forbidden",
        b"origin 'http://evil.example' is not allowed\n",
        closes=False,
    )
    assert "access-control-allow-origin" not in response.headers


def test_the_publish_cli_prints_the_offset_and_a_websocket_subscriber_gets_the_message(
    server: ServerProcess,
) -> None:
    with ws_connect(server.ws_url("/ws/news"), open_timeout=TIMEOUT) as subscriber:
        result = subprocess.run(
            [sys.executable, "-m", "pushwire", "publish", server.url(), "news", "hello, world"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["channel"] == "news"
        assert answer["offset"] == 1
        assert isinstance(answer["epoch"], str)
        assert subscriber.recv(timeout=TIMEOUT) == "hello, world"


def test_the_publish_cli_reports_a_refusal_and_exits_1(server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pushwire", "publish", server.url(), "bad name", "hi"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr == b"pushwire publish: 400 invalid channel name 'bad name'\n"
    assert_still_serving(server)
