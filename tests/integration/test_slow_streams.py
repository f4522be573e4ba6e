"""Every stream is a bounded consumer: a reader that stops reading on sse (E/sse and raw
/sse/<channel>), stream, iframe or tcp is closed with 4001 once its write buffer passes
`max_write_buffer`, and dropped if it does not take its close within `close_timeout`, while a
bystander keeps receiving everything."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from websockets.sync.client import connect

from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import Streamer, TcpClient, publish, stats, subscribe

pytestmark = pytest.mark.integration

BOUND = 65536
MESSAGE = 60_000  # bytes per message
COUNT = 200  # 12 MB: past what loopback socket buffers hold, plus the bound
KINDS = ["sse", "raw-sse", "stream", "iframe", "tcp"]
#: An iframe document recycled at its own bound (4000) would hide the slow-consumer close.
ARGS = (
    "--tcp-port",
    "0",
    "--set",
    f"max_write_buffer={BOUND}",
    "--set",
    "iframe_max_bytes=1000000000",
)


class Slow:
    """A subscriber of `room` that stops reading once subscribed."""

    sock: socket.socket
    read_rest: Callable[[], bytes]

    def __init__(self, server: ServerProcess, kind: str) -> None:
        if kind == "tcp":
            client = TcpClient(server)
            client.hello()
            client.send({"type": "subscribe", "id": 1, "channel": "room"})
            client.next("subscribed")
            self.sock, already = client.sock, client.buffer
        elif kind == "raw-sse":
            self.sock = socket.create_connection((server.host, server.port), timeout=15)
            self.sock.sendall(b"GET /sse/room HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            already = b""
            while b"retry:" not in already:
                already += self.sock.recv(65536)
        else:
            streamer = Streamer(server, kind)
            subscribe(streamer, "room")
            self.sock, already = streamer.sock, streamer.buffer
        self.already = already

    def read_to_end(self) -> bytes:
        """All that is left, until the server ends the connection."""
        got = [self.already]
        try:
            while data := self.sock.recv(1 << 20):
                got.append(data)
        except ConnectionResetError:
            got.append(b"<reset>")
        return b"".join(got)


def _flood(server: ServerProcess) -> None:
    """Publish COUNT messages to `room`, in lockstep with a bystander that reads them all."""
    with connect(f"ws://{server.host}:{server.port}/ws/room", max_size=None) as bystander:
        for i in range(COUNT):
            body = f"{i:06d} ".encode() + b"x" * (MESSAGE - 7)
            publish(server, "room", body)
            got = bystander.recv(timeout=10)
            assert isinstance(got, str) and got.startswith(f"{i:06d} ")


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_reader_that_stops_reading_is_closed_with_4001(
    server_factory: ServerFactory, kind: str
) -> None:
    # close_timeout: time for the slow one to read its backlog and find the close at its end.
    server = server_factory(*ARGS, "--set", "close_timeout=60")
    slow = Slow(server, kind)
    _flood(server)
    rest = slow.read_to_end()
    slow.sock.close()
    assert b"<reset>" not in rest
    assert len(rest) < COUNT * MESSAGE  # cut before the end of the flood
    if kind == "raw-sse":
        # A plain EventSource has no close envelope: the stream ends (it reconnects and
        # resumes from Last-Event-ID).
        assert rest.endswith(b"\r\n0\r\n\r\n")
    else:
        assert b'"code":4001' in rest[-300:]
        assert f"slow consumer (> {BOUND} bytes queued)".encode() in rest[-300:]


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_reader_that_never_reads_is_dropped_and_freed(
    server_factory: ServerFactory, kind: str
) -> None:
    server = server_factory(*ARGS, "--set", "close_timeout=0.5")
    slow = Slow(server, kind)
    _flood(server)
    # Only the stats request itself is left once the slow reader is dropped.
    deadline = time.monotonic() + 10
    while stats(server)["connections_open"] > 1:
        assert time.monotonic() < deadline, stats(server)
        time.sleep(0.05)
    slow.sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_reader_within_the_bound_stays(server_factory: ServerFactory, kind: str) -> None:
    # Less than max_write_buffer (with nothing in the socket buffers) never cuts a reader.
    server = server_factory(*ARGS)
    slow = Slow(server, kind)
    for i in range(BOUND // 2 // 1000):
        publish(server, "room", f"{i:06d} ".encode() + b"y" * 993)
    assert stats(server)["connections_open"] == 2
    slow.sock.settimeout(0.5)
    got = slow.already
    while b"000031 " not in got:
        got += slow.sock.recv(65536)
    assert b'"code":4001' not in got
    slow.sock.close()
