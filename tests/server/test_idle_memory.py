"""What an idle `/pushwire` subscriber (a WebSocket, pushwire.v1, one subscription) costs the
native server: a real server on a loopback socket, clients written by hand on plain sockets
in the same process, the bytes traced in pushwire's own code (issue 18: a connection's
objects, its session, its subscription and presence entry; the event loop's transport is not
counted)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator

import pytest

import pushwire
from pushwire import App, Config, Hub
from pushwire.server.listener import Server
from tests.wire_clients import client_frame

pytestmark = pytest.mark.integration

WAIT = 10.0
#: pushwire's own source files: only allocations made under them are counted.
OURS = os.path.join(os.path.dirname(pushwire.__file__), "*")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    config = Config(port=0)
    served = Server(App(Hub(config=config)), config)
    await served.start()
    yield served
    await served.shutdown()


async def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    received = b""
    while marker not in received:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), WAIT)
        if not data:
            raise EOFError(f"closed before {marker!r}: {received!r}")
        received += data
    return received


async def _subscriber(port: int) -> socket.socket:
    """A pushwire.v1 client over a WebSocket at /pushwire: hello (no user: a user's inbox
    is the broker's, counted elsewhere), then subscribed to `room`."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(
        sock,
        (
            f"GET /pushwire HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: pushwire.v1\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    assert (await _read_until(sock, b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
    hello = {"type": "hello", "user": None, "token": None, "session": None}
    subscribe = {"type": "subscribe", "id": 1, "channel": "room"}
    await loop.sock_sendall(sock, client_frame(0x1, json.dumps(hello).encode()))
    await loop.sock_sendall(sock, client_frame(0x1, json.dumps(subscribe).encode()))
    await _read_until(sock, b'"subscribed"')
    return sock


async def test_an_idle_pushwire_subscriber_costs_a_bounded_number_of_bytes(
    server: Server,
) -> None:
    # Traced in pushwire's code per subscriber (CPython 3.11, the default event loop): 1,685
    # before issue 18's third pass (a WebSocket's config, clock, pings and on_lost in each
    # connection, a float each for its next ping and session start, a resume secret, a
    # tuple for one channel and one presence, a set entry per connection); 1,442 after.
    port = server.sockets[0].getsockname()[1]
    held = [await _subscriber(port) for _ in range(20)]
    gc.collect()
    n = 100
    tracemalloc.start(15)
    try:
        before = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, OURS, all_frames=True)]
        )
        held += [await _subscriber(port) for _ in range(n)]
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, OURS, all_frames=True)]
        )
    finally:
        tracemalloc.stop()
    per_subscriber = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / n
    for sock in held:
        sock.close()
    # Where the bytes went, for the message when the bound is passed.
    sites = "\n".join(
        f"{stat.size_diff / n:6.0f} B  "
        + " <- ".join(
            f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
            for frame in stat.traceback[::-1][:4]
        )
        for stat in after.compare_to(before, "traceback")[:12]
    )
    assert per_subscriber < 1_550, f"{per_subscriber:.0f} B a subscriber:\n{sites}"


async def test_a_handshake_leaves_no_reference_cycle_behind(server: Server) -> None:
    # A connection's HTTP parser referred back to itself through llhttp's callbacks: it, its
    # last request and headers waited for the cycle collector, fragmenting the heap in a
    # burst of connections (~0.9 KiB of RSS a subscriber, issue 18).
    port = server.sockets[0].getsockname()[1]
    gc.collect()
    gc.disable()
    try:
        held = [await _subscriber(port) for _ in range(20)]
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = {
            type(thing).__module__ + "." + type(thing).__qualname__
            for thing in gc.garbage
            if type(thing).__module__.startswith(("pushwire", "httptools"))
        }
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    for sock in held:
        sock.close()
    assert left == set()
