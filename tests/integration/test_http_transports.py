"""The HTTP transports over real sockets, driven by hand-written HTTP clients."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time

import pytest

from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import (
    Poller,
    Streamer,
    hello_query,
    publish,
    session_header,
    stats,
    subscribe,
)

pytestmark = pytest.mark.integration

STREAMS = ("stream", "sse", "iframe")


@pytest.mark.parametrize("kind", ["polling", "longpoll", *STREAMS])
def test_a_thousand_channel_messages_arrive_in_order_once(server: ServerProcess, kind: str) -> None:
    client: Poller | Streamer = (
        Poller(server, kind, user="u")
        if kind in ("polling", "longpoll")
        else Streamer(server, kind)
    )
    assert client.welcome["transport"] == kind
    subscribe(client, "feed")

    def publish_all() -> None:
        for i in range(1000):
            publish(server, "feed", f"m{i}".encode(), binary=i % 10 == 0)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    if isinstance(client, Poller):
        messages = client.receive(1000)
    else:
        messages = [client.next("message") for _ in range(1000)]
    publisher.join()
    offsets = [m["offset"] for m in messages]
    assert offsets == list(range(offsets[0], offsets[0] + 1000))
    for i, message in enumerate(messages):
        if i % 10 == 0:  # binary travels as base64 on text transports
            assert message["data64"] == base64.b64encode(f"m{i}".encode()).decode()
        else:
            assert message["data"] == f"m{i}"


@pytest.mark.parametrize("kind", STREAMS)
def test_streams_are_uncached_unbuffered_and_typed(server: ServerProcess, kind: str) -> None:
    client = Streamer(server, kind)
    assert "cache-control: no-cache" in client.headers
    assert "x-accel-buffering: no" in client.headers
    assert "transfer-encoding: chunked" in client.headers
    expected = {"stream": "application/x-ndjson", "sse": "text/event-stream", "iframe": "text/html"}
    assert f"content-type: {expected[kind]}" in client.headers
    client.close()


def test_a_lost_longpoll_response_is_sent_again(server: ServerProcess) -> None:
    client = Poller(server, "longpoll")
    subscribe(client, "news")
    acknowledged = client.cursor
    publish(server, "news", b"first")
    lost = client.poll()  # the client "loses" this response: it does not acknowledge it
    assert [e["data"] for e in lost if e["type"] == "message"] == ["first"]
    publish(server, "news", b"second")
    again = client.poll(cursor=acknowledged)
    assert [e["data"] for e in again if e["type"] == "message"] == ["first", "second"]
    # Acknowledged now: nothing is sent twice from here on.
    publish(server, "news", b"third")
    assert [e["data"] for e in client.poll() if e["type"] == "message"] == ["third"]


def test_longpolls_reuse_one_keep_alive_connection(server: ServerProcess) -> None:
    before = stats(server)["connections_accepted"]
    client = Poller(server, "polling")
    for _ in range(10):
        client.poll()
    assert stats(server)["connections_accepted"] - before == 2  # the poller's, and this one


def raw_request(server: ServerProcess, sock: socket.socket, target: str, headers: str) -> bytes:
    """An HTTP/1.0 GET (with `?hello=`, or a poll naming its session in `headers`)."""
    sock.sendall(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_http_10_keep_alive_polls_share_one_connection(server: ServerProcess) -> None:
    before = stats(server)["connections_accepted"]
    sock = socket.create_connection((server.host, server.port), timeout=10)
    first = raw_request(
        server, sock, f"/pushwire/polling?hello={hello_query()}", "Connection: keep-alive\r\n"
    )
    assert b"Connection: keep-alive" in first
    welcome = json.loads(first.partition(b"\r\n\r\n")[2].splitlines()[0])
    named = f"Pushwire-Session: {welcome['session']} {welcome['resume']}\r\n"
    for _ in range(5):
        response = raw_request(
            server, sock, "/pushwire/polling", f"Connection: keep-alive\r\n{named}"
        )
        assert response.startswith(b"HTTP/1.0 200 OK")
    sock.close()
    assert stats(server)["connections_accepted"] - before == 2


def test_http_10_without_keep_alive_opens_one_connection_per_poll(server: ServerProcess) -> None:
    before = stats(server)["connections_accepted"]
    sock = socket.create_connection((server.host, server.port), timeout=10)
    first = raw_request(server, sock, f"/pushwire/polling?hello={hello_query()}", "")
    assert b"Connection: close" in first
    assert sock.recv(10) == b""  # the server closed it
    welcome = json.loads(first.partition(b"\r\n\r\n")[2].splitlines()[0])
    named = f"Pushwire-Session: {welcome['session']} {welcome['resume']}\r\n"
    for _ in range(3):
        with socket.create_connection((server.host, server.port), timeout=10) as each:
            assert raw_request(server, each, "/pushwire/polling", named).startswith(
                b"HTTP/1.0 200 OK"
            )
    assert stats(server)["connections_accepted"] - before == 5


def test_an_unknown_session_gets_410_with_a_defined_error(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/pushwire/longpoll?session=nope&cursor=0")
    response = conn.getresponse()
    assert response.status == 410
    assert json.loads(response.read()) == {
        "type": "error",
        "code": "session_unknown",
        "message": "unknown or expired session 'nope'",
    }


def test_an_expired_session_is_reported_in_the_welcome(server: ServerProcess) -> None:
    client = Poller(server, "polling", session="long-gone")
    assert client.welcome["resumed"] is False
    assert client.welcome["expired"] == "long-gone"
    assert client.session != "long-gone"


def test_a_poller_over_its_queue_bound_is_closed_with_4001_others_unaffected(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_poll_frames=50")
    slow, fine = Poller(server, "polling"), Poller(server, "polling")
    subscribe(slow, "busy")
    subscribe(fine, "busy")
    for i in range(60):
        publish(server, "busy", f"{i}".encode())
        if i % 10 == 9:
            assert len(fine.receive(10)) == 10
    envelopes = slow.poll()
    assert envelopes[-1] == {
        "type": "close",
        "code": 4001,
        "reason": "slow consumer (> 50 frames or 4194304 bytes queued)",
    }
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request(
        "GET", f"/pushwire/polling?cursor={slow.cursor}", headers=session_header(slow.welcome)
    )
    assert conn.getresponse().status == 409  # detached: the client must send hello again
    resumed = Poller(server, "polling", session=slow.session, resume=slow.secret)
    assert resumed.welcome["resumed"] is True


def test_a_session_resumes_on_another_transport_and_gets_what_it_missed_from_the_inbox(
    server: ServerProcess,
) -> None:
    stream = Streamer(server, "sse", user="carol")
    session, secret = stream.welcome["session"], stream.welcome["resume"]
    start = stream.welcome["inbox"]
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/api/send/carol", body=b"one")
    conn.getresponse().read()
    assert stream.next("message")["offset"] == 1
    stream.close()  # dropped: say "one" never reached the client
    # The session waits for its client; direct messages meanwhile are in carol's inbox.
    conn.request("POST", "/api/send/carol", body=b"two")
    assert json.loads(conn.getresponse().read())["sessions"] == 1
    since = {"epoch": start["epoch"], "offset": 0}
    poller = Poller(server, "longpoll", session=session, resume=secret, inbox=since)
    assert poller.welcome["resumed"] is True
    assert poller.session == session and poller.secret == secret
    assert poller.welcome["inbox"] == since  # where the client stands: it gets the rest
    got = poller.receive(2)
    assert [(e["offset"], e["data"]) for e in got] == [(1, "one"), (2, "two")]
    since = {"epoch": start["epoch"], "offset": 2}
    stream = Streamer(server, "stream", session=session, resume=secret, inbox=since)
    assert stream.welcome["resumed"] is True
    assert stream.welcome["inbox"] == since
    conn.request("POST", "/api/send/carol", body=b"three")
    conn.getresponse().read()
    message = stream.next("message")
    assert message == {"type": "message", "epoch": start["epoch"], "offset": 3, "data": "three"}


def test_a_resubscription_with_since_replays_what_was_missed(server: ServerProcess) -> None:
    first = Poller(server, "polling")
    subscribed = subscribe(first, "log")
    for i in range(5):
        publish(server, "log", f"{i}".encode())
    seen = first.receive(2)
    position = {"epoch": seen[-1]["epoch"], "offset": seen[-1]["offset"]}
    later = Streamer(server, "stream")
    later.send({"type": "subscribe", "id": 1, "channel": "log", "since": position})
    assert later.next("subscribed")["offset"] == subscribed["offset"] + 5
    assert [later.next("message")["data"] for _ in range(3)] == ["2", "3", "4"]


def test_raw_sse_resumes_from_last_event_id(server: ServerProcess) -> None:
    for i in range(3):
        publish(server, "ticks", f"t{i}".encode())
    first = publish(server, "ticks", b"t3")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    last_id = f"{first['epoch']}:{first['offset'] - 2}"
    sock.sendall(
        f"GET /sse/ticks HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: {last_id}\r\n\r\n".encode()
    )
    data = b""
    while data.count(b"data: ") < 2:
        data += sock.recv(65536)
    assert f"id: {first['epoch']}:{first['offset'] - 1}\r\n".encode() not in data
    assert f"id: {first['epoch']}:{first['offset'] - 1}\ndata: t2\n\n".encode() in data
    assert f"id: {first['epoch']}:{first['offset']}\ndata: t3\n\n".encode() in data
    sock.close()


def test_a_message_of_max_message_bytes_fits_an_http_transports_post(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_message=30000", "--set", "max_body_bytes=60000")
    client = Poller(server, "longpoll", path="/echo")
    payload = bytes(range(256)) * 117 + b"\x00" * 48  # exactly 30,000 bytes, binary
    assert len(payload) == 30000
    client.send({"type": "send", "data64": base64.b64encode(payload).decode()})
    (echoed,) = client.receive(1)
    assert base64.b64decode(echoed["data64"]) == payload


def test_the_publish_api_refuses_a_message_over_max_message(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_message=1000")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/api/publish/room", body=b"x" * 1000)
    first = conn.getresponse()
    assert (first.status, json.loads(first.read())["offset"]) == (200, 1)
    conn.request("POST", "/api/publish/room", body=b"x" * 1001)
    response = conn.getresponse()
    assert response.status == 413
    assert response.read() == b"message over size limit (1001 > 1000 bytes)\n"


def test_the_send_api_refuses_a_message_over_max_message(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "max_message=1000")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/api/send/erin", body=b"x" * 1000)
    first = conn.getresponse()
    answer = json.loads(first.read())
    assert isinstance(answer.pop("epoch"), str)
    assert (first.status, answer) == (200, {"user": "erin", "offset": 1, "nodes": 0, "sessions": 0})
    conn.request("POST", "/api/send/erin", body=b"x" * 1001)
    response = conn.getresponse()
    assert response.status == 413
    assert response.read() == b"message over size limit (1001 > 1000 bytes)\n"


def test_a_resumed_longpoll_gets_its_own_queue_not_the_superseded_ones_close(
    server: ServerProcess,
) -> None:
    first = Poller(server, "longpoll")
    subscribe(first, "room")
    # e.g. after a silent drop
    again = Poller(server, "longpoll", session=first.session, resume=first.secret)
    assert again.welcome["resumed"] is True
    subscribe(again, "room")
    publish(server, "room", b"for the new connection")
    envelopes = again.receive(1)
    assert envelopes[0]["data"] == "for the new connection"
    assert all(e["type"] != "close" for e in again.backlog)


def test_a_held_longpoll_is_answered_empty_after_longpoll_timeout(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "longpoll_timeout=0.5")
    client = Poller(server, "longpoll")
    started = time.monotonic()
    assert client.poll() == []  # nothing was queued: held, then answered empty
    assert 0.45 <= time.monotonic() - started < 5


def test_a_longpoll_welcome_announces_how_long_a_poll_is_held(
    server_factory: ServerFactory,
) -> None:
    """The client's deadline for a poll is this and a margin (docs/protocol.md)."""
    server = server_factory("--set", "longpoll_timeout=1.5")
    assert Poller(server, "longpoll").welcome["longpoll_timeout"] == 1.5
    assert "longpoll_timeout" not in Poller(server, "polling").welcome


def test_a_longpoll_client_that_stops_polling_is_detached_after_poll_grace(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "poll_grace=0.5")
    client = Poller(server, "longpoll")
    subscribe(client, "room")  # its last poll is answered: the grace starts
    started = time.monotonic()
    reached = 1
    while reached and time.monotonic() - started < 10:
        before = stats(server)["deliveries"]
        publish(server, "room", b"anyone?")
        reached = stats(server)["deliveries"] - before
    elapsed = time.monotonic() - started
    assert reached == 0, "the idle poller was never detached"
    assert elapsed >= 0.45, f"detached after {elapsed:.2f} s, before its grace of 0.5 s"
