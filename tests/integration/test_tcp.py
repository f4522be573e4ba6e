"""The raw TCP transport over real sockets: frames, sessions, resume, the policy file, bounds."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import TcpClient

pytestmark = pytest.mark.integration


@pytest.fixture
def tcp_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--tcp-port", "0")


def test_text_and_binary_round_trip_on_a_channel(tcp_server: ServerProcess) -> None:
    client = TcpClient(tcp_server)
    welcome = client.hello(user="desk")
    assert welcome["transport"] == "tcp"
    client.send({"type": "subscribe", "id": 1, "channel": "room"})
    assert client.next("subscribed")["channel"] == "room"
    client.send({"type": "publish", "id": 2, "channel": "room", "data": "你好"})
    assert client.next("message")["data"] == "你好"
    client.send({"type": "publish", "id": 3, "channel": "room"}, binary=b"\x00\n\xff")
    assert client.next("message")["binary"] == b"\x00\n\xff"


def test_a_thousand_messages_none_lost_or_doubled_across_a_dropped_connection(
    tcp_server: ServerProcess,
) -> None:
    client = TcpClient(tcp_server)
    welcome = client.hello(user="desk")
    session, secret = welcome["session"], welcome["resume"]
    client.send({"type": "subscribe", "id": 1, "channel": "feed"})
    client.next("subscribed")
    publisher = TcpClient(tcp_server)
    publisher.hello()
    for i in range(1000):
        publisher.send({"type": "publish", "channel": "feed", "data": f"m{i}"})
    seen: list[dict[str, Any]] = [client.next("message") for _ in range(400)]
    client.close()  # dropped mid-stream, 600 messages still to come or in flight
    again = TcpClient(tcp_server)
    assert again.hello(session=session, resume=secret)["resumed"] is True
    last = seen[-1]
    since = {"epoch": last["epoch"], "offset": last["offset"]}
    again.send({"type": "subscribe", "id": 2, "channel": "feed", "since": since})
    again.next("subscribed")
    seen += [again.next("message") for _ in range(600)]
    assert [m["data"] for m in seen] == [f"m{i}" for i in range(1000)]


async def test_a_tcp_client_and_a_websocket_client_see_each_other(
    tcp_server: ServerProcess,
) -> None:
    client = TcpClient(tcp_server)
    client.hello()
    client.send({"type": "subscribe", "id": 1, "channel": "lobby"})
    client.next("subscribed")
    async with connect(tcp_server.ws_url("/ws/lobby")) as ws:
        await ws.send("from the browser side")
        message = await asyncio.to_thread(client.next, "message")
        assert message["data"] == "from the browser side"
        client.send({"type": "publish", "channel": "lobby", "data": "from the desktop"})
        assert await asyncio.wait_for(ws.recv(), 5) == "from the browser side"
        assert await asyncio.wait_for(ws.recv(), 5) == "from the desktop"


def test_the_policy_file_request_is_answered_byte_exactly(tcp_server: ServerProcess) -> None:
    assert tcp_server.tcp_port is not None
    with socket.create_connection((tcp_server.host, tcp_server.tcp_port), timeout=10) as sock:
        sock.sendall(b"<policy-file-request/>\x00")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    port = tcp_server.tcp_port
    assert answer == (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">\n'
        b"<cross-domain-policy>\n"
        b'<site-control permitted-cross-domain-policies="master-only"/>\n'
        b'<allow-access-from domain="127.0.0.1" to-ports="%d"/>\n'
        b'<allow-access-from domain="[::1]" to-ports="%d"/>\n'
        b'<allow-access-from domain="localhost" to-ports="%d"/>\n'
        b"</cross-domain-policy>\x00" % (port, port, port)
    )


def test_the_policy_lists_allowed_origins(server_factory: ServerFactory) -> None:
    server = server_factory("--tcp-port", "0", "--allow-origin", "https://chat.example")
    assert server.tcp_port is not None
    with socket.create_connection((server.host, server.tcp_port), timeout=10) as sock:
        sock.sendall(b"<policy-file-request/>\x00")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert b'<allow-access-from domain="chat.example" to-ports=' in answer


BAD_FRAMES = [
    (struct.pack("!I", 0), "bad_request", "frame length 0: a frame holds at least its kind byte"),
    (
        struct.pack("!IB", 2, 9) + b"x",
        "bad_request",
        "unknown frame kind 9: 1 (text) or 2 (binary)",
    ),
    (
        struct.pack("!I", 0x7FFFFFFF),
        "too_large",
        "frame over size limit (2147483647 > 1114112 bytes)",
    ),
    (struct.pack("!IB", 3, 1) + b"\xff\xfe", "bad_request", "text frame is not UTF-8 at byte 0"),
    (
        b"<not a policy request",
        "bad_request",
        "a frame cannot start with '<': not a policy request",
    ),
]


@pytest.mark.parametrize(("frame", "code", "message"), BAD_FRAMES)
def test_bad_frames_get_a_defined_error_and_close_others_carry_on(
    tcp_server: ServerProcess, frame: bytes, code: str, message: str
) -> None:
    bystander = TcpClient(tcp_server)
    bystander.hello()
    bad = TcpClient(tcp_server)
    bad.sock.sendall(frame)
    assert bad.recv() == {"type": "error", "code": code, "message": message}
    assert bad.recv()["type"] == "close"
    assert bad.closed_by_server()
    bystander.send({"type": "ping"})
    assert bystander.next("pong") == {"type": "pong"}


def test_a_frame_just_under_the_bound_passes(server_factory: ServerFactory) -> None:
    server = server_factory("--tcp-port", "0", "--set", "max_message=1000")
    client = TcpClient(server)
    client.hello()
    bound = 1000 + 64 * 1024  # max_message plus the envelope allowance
    header = json.dumps({"type": "send"}).encode() + b"\n"
    client.send_frame(2, header + b"x" * (bound - 1 - len(header)))  # length = bound exactly
    client.send({"type": "ping"})
    assert client.next("pong") == {"type": "pong"}
    client.send_frame(2, header + b"x" * (bound - len(header)))  # one over
    assert client.recv()["code"] == "too_large"


def test_a_half_sent_frame_times_out_with_a_defined_error(server_factory: ServerFactory) -> None:
    server = server_factory("--tcp-port", "0", "--set", "receive_window=0.3")
    client = TcpClient(server)
    client.hello()
    client.sock.sendall(struct.pack("!IB", 100, 1) + b'{"type":')
    assert client.next("error") == {
        "type": "error",
        "code": "bad_request",
        "message": "incomplete frame: 13 bytes, then nothing for 0.3 s",
    }
    assert client.closed_by_server()


def test_frames_before_a_bad_one_in_the_same_read_are_taken_first(
    tcp_server: ServerProcess,
) -> None:
    # Found by the fuzzer (tests/fuzz/test_parsers.py): they were dropped with the bad one.
    client = TcpClient(tcp_server)
    client.hello()
    ping = json.dumps({"type": "ping"}).encode()
    client.sock.sendall(struct.pack("!IB", len(ping) + 1, 1) + ping + struct.pack("!I", 0))
    assert client.recv()["type"] == "pong"
    error = client.recv()
    assert error["type"] == "error"
    assert error["message"] == "frame length 0: a frame holds at least its kind byte"
    assert client.closed_by_server()


def test_a_silent_peer_is_pinged_then_dropped(server_factory: ServerFactory) -> None:
    server = server_factory(
        "--tcp-port", "0", "--set", "ping_interval=0.2", "--set", "ping_timeout=0.2"
    )
    client = TcpClient(server)
    client.hello()
    assert client.recv() == {"type": "ping"}
    assert client.closed_by_server()


def test_the_welcome_announces_the_interval_a_silent_peer_is_pinged_at(
    server_factory: ServerFactory,
) -> None:
    """The client takes a connection silent for two of the welcome's `heartbeat` for dead:
    the server must ping at that interval (before, it pinged every `heartbeat_interval`, the
    streams' setting, while the welcome said `ping_interval`)."""
    server = server_factory(
        "--tcp-port", "0", "--set", "ping_interval=0.2", "--set", "heartbeat_interval=60"
    )
    client = TcpClient(server)
    assert client.hello()["heartbeat"] == 0.2
    assert client.recv() == {"type": "ping"}  # within the socket's 10 s, not after 60 s


def test_a_peer_that_answers_pings_stays(server_factory: ServerFactory) -> None:
    server = server_factory(
        "--tcp-port", "0", "--set", "ping_interval=0.2", "--set", "ping_timeout=0.2"
    )
    client = TcpClient(server)
    client.hello()
    for _ in range(3):
        assert client.recv() == {"type": "ping"}
        client.send({"type": "pong"})
    client.send({"type": "ping"})
    assert client.next("pong") == {"type": "pong"}


async def test_tls_applies_to_tcp_and_websocket_alike(
    server_factory: ServerFactory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = server_factory("--tcp-port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
    context = ssl.create_default_context(cafile=str(cert))
    client = TcpClient(server, wrap=context)
    assert client.hello()["transport"] == "tcp"
    async with connect(f"wss://localhost:{server.port}/echo", ssl=context) as ws:
        await ws.send("secure")
        assert await asyncio.wait_for(ws.recv(), 5) == "secure"


NODE_CLIENT = Path(__file__).resolve().parents[2] / "examples" / "tcp_client.mjs"


def test_the_node_example_client_gets_a_thousand_messages_across_a_drop(
    tcp_server: ServerProcess,
) -> None:
    node = subprocess.Popen(
        [
            "node",
            str(NODE_CLIENT),
            "--port",
            str(tcp_server.tcp_port),
            "--channel",
            "feed",
            "--count",
            "1000",
            "--drop-after",
            "400",
            "--ready",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert node.stdout is not None
        assert json.loads(node.stdout.readline())["ready"] is True
        publisher = TcpClient(tcp_server)
        publisher.hello()
        for i in range(1000):
            if i % 10 == 0:
                publisher.send({"type": "publish", "channel": "feed"}, binary=bytes([i % 256]))
            else:
                publisher.send({"type": "publish", "channel": "feed", "data": f"m{i}"})
        out, err = node.communicate(timeout=60)
    finally:
        node.kill()
    assert node.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1000
    for i, line in enumerate(lines):
        if i % 10 == 0:
            assert line["binary"] == bytes([i % 256]).hex()
        else:
            assert line["data"] == f"m{i}"
    offsets = [line["offset"] for line in lines]
    assert offsets == list(range(offsets[0], offsets[0] + 1000))
