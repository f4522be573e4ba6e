"""Every number a client writes as text, against a running server: at the bound it is taken,
one over (or a digit `int` refuses, `²`, or 4,301 digits) it gets 400 with a short message.
Never a dropped connection with a traceback in the server's log (as before: `"²".isdigit()`
is True, and `int` refuses more than 4,300 digits)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from tests.servers import ServerProcess, start_server
from tests.wire_clients import Poller, publish, session_header

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
MAX = 2**63 - 1  # the largest offset or cursor a client may name (pushwire.parsing)
#: Not a number the server takes: one over, a superscript two, too many digits, a sign.
BAD = [str(MAX + 1), "²", "1" * 4301, "-1", "+1", " 1", "0x10", ""]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server for the module: each test checks its log is still free of tracebacks."""
    started = start_server()
    yield started
    started.stop()


def no_traceback(server: ServerProcess) -> None:
    log = b"".join(server.output)
    assert b"Traceback" not in log and b"ValueError" not in log, log.decode(errors="replace")


@pytest.fixture
def poller(server: ServerProcess) -> Iterator[Poller]:
    client = Poller(server, "polling")
    yield client
    client.conn.close()


def poll_status(poller: Poller, query: str) -> tuple[int, bytes]:
    conn = poller.conn
    conn.request("GET", f"/pushwire/polling?{query}", headers=session_header(poller.welcome))
    response = conn.getresponse()
    return response.status, response.read()


@pytest.mark.parametrize("name", ["cursor"])
def test_a_poll_cursor_up_to_the_largest_offset_is_taken(
    server: ServerProcess, poller: Poller, name: str
) -> None:
    assert poll_status(poller, f"{name}={MAX}")[0] == 200
    assert poll_status(poller, f"{name}=0{MAX}")[0] == 400  # 20 digits: over the length
    no_traceback(server)


@pytest.mark.parametrize("value", BAD, ids=["over", "superscript", "4301-digits", *BAD[3:]])
@pytest.mark.parametrize("name", ["cursor"])
def test_a_bad_poll_cursor_gets_400_and_the_session_carries_on(
    server: ServerProcess, poller: Poller, name: str, value: str
) -> None:
    status, body = poll_status(poller, f"{name}={quote(value)}")
    assert status == 400
    error = json.loads(body)
    assert error["code"] == "bad_request"
    assert error["message"].startswith((f"invalid {name} ", f"{name} {MAX + 1} is over"))
    assert len(body) < 200  # what was sent is quoted in a few dozen characters at most
    assert poll_status(poller, "cursor=0")[0] == 200  # same connection, same session
    no_traceback(server)


def sse_status(server: ServerProcess, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, b"" if response.status == 200 else response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("where", ["header", "query"])
def test_a_last_event_id_up_to_the_largest_offset_opens_the_stream(
    server: ServerProcess, where: str
) -> None:
    position = publish(server, "ticks", b"one")
    last = f"{position['epoch']}:{MAX}"
    target, headers = ("/sse/ticks", {"Last-Event-ID": last})
    if where == "query":
        target, headers = f"/sse/ticks?lastEventId={last}", {}
    assert sse_status(server, target, headers)[0] == 200
    no_traceback(server)


@pytest.mark.parametrize(
    "offset", [*BAD[:4], "1.5"], ids=["over", "superscript", "4301-digits", "negative", "dot"]
)
@pytest.mark.parametrize("where", ["header", "query"])
def test_a_bad_last_event_id_gets_400(server: ServerProcess, where: str, offset: str) -> None:
    last = f"e1:{offset}"
    target, headers = ("/sse/ticks", {"Last-Event-ID": last})
    if where == "query":
        target, headers = f"/sse/ticks?lastEventId={quote(last)}", {}
    status, body = sse_status(server, target, headers)
    assert status == 400
    assert body.startswith(b"invalid Last-Event-ID offset") or b"is over" in body
    assert len(body) < 200
    no_traceback(server)


def raw_exchange(server: ServerProcess, request: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize(
    ("length", "status"),
    [
        (str(MAX), b"413"),  # a number, over max_body_bytes
        (str(MAX + 1), b"400"),  # over the largest length: not read as a number at all
        ("0" * 18 + "5", b"200"),  # 19 digits: the most a length may have
        ("0" * 19 + "5", b"400"),
    ],
)
def test_a_content_length_has_at_most_19_digits(
    server: ServerProcess, length: str, status: bytes
) -> None:
    request = (
        "POST /api/publish/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Length: {length}\r\n\r\nhello"
    )
    answer = raw_exchange(server, request.encode())
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    no_traceback(server)


@pytest.mark.parametrize(
    ("since", "taken"),
    [
        ({"epoch": "e" * 64, "offset": MAX}, True),
        ({"epoch": "e" * 64, "offset": MAX + 1}, False),  # orjson reads up to 2^64 - 1
        ({"epoch": "e1", "offset": 0}, True),
        ({"epoch": "e1", "offset": -1}, False),
        ({"epoch": "e" * 65, "offset": 1}, False),
    ],
    ids=["max", "over", "zero", "negative", "long-epoch"],
)
def test_a_since_position_is_taken_in_range_and_refused_out_of_it(
    server: ServerProcess, since: dict[str, object], taken: bool
) -> None:
    with ws_connect(server.ws_url("/pushwire"), subprotocols=[Subprotocol("pushwire.v1")]) as ws:
        ws.send(json.dumps({"type": "hello"}))
        assert json.loads(ws.recv(TIMEOUT))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "id": 7, "channel": "log", "since": since}))
        answer = json.loads(ws.recv(TIMEOUT))
        if taken:
            assert answer["type"] == "subscribed"
        else:
            assert (answer["type"], answer["code"], answer["id"]) == ("error", "bad_request", 7)
            assert answer["message"].startswith("since {epoch: ")
            assert len(answer["message"]) <= 300
    no_traceback(server)
