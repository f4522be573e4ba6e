"""A raw-garbage fuzzer against a running `pushwire serve`: random and mutated byte streams on
every port (HTTP, WebSocket after an upgrade, the TCP port), for a bounded time, while a
bystander keeps receiving what is published.

Each input is one connection: a random or mutated stream (from a corpus of valid requests,
upgrades, WebSocket frames and TCP frames: bits flipped, bytes replaced, inserted, deleted,
repeated, spliced, numbers swapped for bad ones), sent in random pieces, with what comes back
read for a moment; then the connection is closed, half-closed, reset or left to the server's
timeouts. `run` reports the figures; tests/fuzz/test_garbage.py checks the criteria (no
traceback in the server's output, no connection or session left behind, the bystander gets
every message, RSS back near its baseline).

A longer run (docs/security.md "Fuzzing"):

    PYTHONPATH=src python -m tests.fuzz.garbage --seconds 600 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.servers import ServerProcess, start_server
from tests.wire_clients import client_frame, stats

#: What the server is started with: sessions and polls that end quickly, so that the check
#: for sessions left behind need not wait 75 s.
SERVER_ARGS = ("--tcp-port", "0", "--set", "session_grace=1", "--set", "poll_grace=1")
#: Log lines that mean an exception escaped somewhere, or the guard caught one.
BAD_LOG = (b"Traceback", b" ERROR ", b" CRITICAL ", b"Exception in callback", b"Fatal error")

HOST = b"Host: 127.0.0.1\r\n"
HELLO = json.dumps({"type": "hello"})
KEY = base64.b64encode(b"0123456789abcdef")


def _http(method: bytes, target: bytes, body: bytes = b"", *headers: bytes) -> bytes:
    head = b"%b %b HTTP/1.1\r\n%b" % (method, target, HOST) + b"".join(h + b"\r\n" for h in headers)
    if body or method == b"POST":
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def _upgrade(path: bytes, protocol: bytes | None = None) -> bytes:
    extra = [b"Sec-WebSocket-Protocol: " + protocol] if protocol else []
    return _http(
        b"GET",
        path,
        b"",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + KEY,
        b"Sec-WebSocket-Version: 13",
        *extra,
    )


def _frames() -> list[bytes]:
    return [
        client_frame(0x1, HELLO.encode()),
        client_frame(0x1, b'{"type":"subscribe","id":1,"channel":"fuzz"}'),
        client_frame(0x1, b'{"type":"publish","channel":"fuzz","data":"x"}'),
        client_frame(0x2, b'{"type":"publish","channel":"fuzz"}\n\x00\xff'),
        client_frame(0x1, b'{"type":"ack","seq":1}'),
        client_frame(0x1, b"hel", fin=False) + client_frame(0x0, b"lo"),
        client_frame(0x9, b"ping"),
        client_frame(0x8, struct.pack("!H", 1000) + b"bye"),
    ]


def _tcp(envelope: str) -> bytes:
    return struct.pack("!IB", len(envelope.encode()) + 1, 1) + envelope.encode()


#: Valid input for each port, for the mutations to start from.
HTTP_CORPUS = [
    _http(b"GET", b"/healthz"),
    _http(b"GET", b"/api/stats"),
    _http(b"POST", b"/api/publish/fuzz", b"hello", b"Content-Type: text/plain"),
    _http(b"POST", b"/pushwire/longpoll", HELLO.encode()),
    _http(b"POST", b"/pushwire/polling", HELLO.encode()),
    _http(b"GET", b"/pushwire/polling?cursor=0&seq=0", b"", b"Pushwire-Session: a b"),
    _http(b"POST", b"/pushwire/send", b'{"type":"ping"}', b"Pushwire-Session: a b"),
    _http(b"GET", b"/sse/fuzz", b"", b"Last-Event-ID: e1:1"),
    _http(b"GET", b"/sse/fuzz?lastEventId=e1:3"),
    _http(b"GET", b"/pushwire/sse?hello=" + HELLO.replace('"', "%22").encode()),
    _http(b"POST", b"/pushwire/stream", HELLO.encode()),
    _http(b"GET", b"/pushwire/iframe?hello=%7B%7D&origin=http%3A%2F%2Flocalhost"),
    b"POST /api/publish/fuzz HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5;x=y\r\nhello\r\n0\r\nTrailer: t\r\n\r\n",
    _http(b"GET", b"/healthz") * 3,
    _upgrade(b"/echo") + b"".join(_frames()[5:7]),
    _upgrade(b"/pushwire", b"pushwire.v1") + b"".join(_frames()[:5]),
    _upgrade(b"/ws/fuzz") + client_frame(0x1, b"raw") + _frames()[7],
]
TCP_CORPUS = [
    _tcp(HELLO) + _tcp('{"type":"subscribe","channel":"fuzz"}'),
    _tcp(HELLO) + _tcp('{"type":"publish","channel":"fuzz","data":"x"}') + _tcp('{"type":"pong"}'),
    _tcp(HELLO) + struct.pack("!IB", 9, 2) + b'{"a":1}\nz',
    b"<policy-file-request/>\x00",
]
BAD_NUMBERS = [b"\xc2\xb2", b"9" * 30, b"-1", b"1" * 5000, b"0x10", b"", b"1e9", b"\x00"]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """`data` changed one to four times."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(8)
        if kind == 0 and out:  # flip bits
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:  # replace a byte
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 2:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3:  # delete a range
            del out[at : at + rng.randint(1, 32)]
        elif kind == 4:  # repeat a range
            out[at:at] = out[at : at + rng.randint(1, 64)] * rng.randint(1, 50)
        elif kind == 5:  # splice with another input
            other = rng.choice(corpus)
            out[at:] = other[rng.randrange(len(other) + 1) :]
        elif kind == 6:  # a bad number where a digit was
            digits = [i for i, b in enumerate(out) if 48 <= b <= 57]
            if digits:
                i = rng.choice(digits)
                out[i : i + 1] = rng.choice(BAD_NUMBERS)
        else:  # cut short
            del out[at:]
    return bytes(out)


def make_input(rng: random.Random, tcp: bool) -> bytes:
    corpus = TCP_CORPUS if tcp else HTTP_CORPUS
    choice = rng.random()
    if choice < 0.15:
        return rng.randbytes(rng.randint(1, 4096))
    if choice < 0.25:
        return rng.choice(corpus)  # valid: the server's answers are exercised too
    return mutate(rng, rng.choice(corpus), corpus)


@dataclass
class Figures:
    """What a run did."""

    seconds: float = 0.0
    inputs: int = 0
    bytes_sent: int = 0
    answered: int = 0  # inputs the server wrote something back to
    published: int = 0
    received: int = 0
    #: The slowest publish's answer, ms: the server stayed responsive throughout.
    slowest_publish_ms: float = 0.0
    #: How the bystander's connection ended, if it did (it must not).
    bystander_lost: str | None = None
    bystander_port: int = 0
    by_port: dict[str, int] = field(default_factory=lambda: {"http": 0, "tcp": 0})


async def _one(rng: random.Random, host: str, port: int, tcp: bool, figures: Figures) -> None:
    data = make_input(rng, tcp)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        return
    figures.inputs += 1
    figures.by_port["tcp" if tcp else "http"] += 1
    answered = False
    try:
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 3)))
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            writer.write(data[a:b])
            figures.bytes_sent += b - a
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.05)
        if rng.random() < 0.2 and writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError):
            answered = bool(await asyncio.wait_for(reader.read(65536), rng.random() * 0.3))
    except (OSError, ConnectionError):
        pass
    finally:
        figures.answered += answered
        if rng.random() < 0.3:
            writer.transport.abort()  # a reset
        else:
            writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()


async def _attacker(
    seed: int, server: ServerProcess, until: float, figures: Figures, now: Callable[[], float]
) -> None:
    rng = random.Random(seed)
    assert server.tcp_port is not None
    while now() < until:
        tcp = rng.random() < 0.3
        await _one(rng, server.host, server.tcp_port if tcp else server.port, tcp, figures)


async def _publisher(server: ServerProcess, channel: str, until: float, figures: Figures) -> None:
    """Publishes 0, 1, 2, ... every 20 ms on one keep-alive connection."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        while time.monotonic() < until:
            body = str(figures.published).encode()
            sent = time.monotonic()
            writer.write(_http(b"POST", f"/api/publish/{channel}".encode(), body))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            took = (time.monotonic() - sent) * 1000
            figures.slowest_publish_ms = max(figures.slowest_publish_ms, round(took, 1))
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            figures.published += 1
            await asyncio.sleep(0.02)
    finally:
        writer.close()


async def run(
    server: ServerProcess, seconds: float, *, seed: int = 1, attackers: int = 8
) -> Figures:
    """Fuzz `server` for `seconds` with `attackers` concurrent connections at a time, while a
    bystander WebSocket receives what is published to a channel no input names."""
    figures = Figures()
    channel = f"bystander-{os.urandom(6).hex()}"
    received: list[str] = []
    started = time.monotonic()
    until = started + seconds
    url = f"ws://{server.host}:{server.port}/ws/{channel}"
    async with connect(url) as bystander:
        figures.bystander_port = bystander.local_address[1]

        async def receive() -> None:
            # Throughout the run: a client that stops reading is a slow consumer (and its
            # library stops answering pings), which is not what the bystander is here for.
            try:
                while True:
                    received.append(str(await bystander.recv()))
            except ConnectionClosed as exc:
                figures.bystander_lost = f"{exc!r} after {len(received)} messages"

        receiving = asyncio.ensure_future(receive())
        await asyncio.gather(
            *(
                _attacker(seed * 1000 + i, server, until, figures, time.monotonic)
                for i in range(attackers)
            ),
            _publisher(server, channel, until, figures),
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while len(received) < figures.published and not receiving.done():
                    await asyncio.sleep(0.05)
        receiving.cancel()
    figures.seconds = time.monotonic() - started
    figures.received = sum(1 for i, text in enumerate(received) if text == str(i))
    return figures


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid`, KiB (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--debug", action="store_true", help="the server logs at debug level")
    args = parser.parse_args()
    server = start_server(*SERVER_ARGS, *(["--log-level", "debug"] if args.debug else []))
    try:
        before = rss_kib(server.process.pid)
        figures = asyncio.run(run(server, args.seconds, seed=args.seed, attackers=args.attackers))
        time.sleep(3)  # sessions of the fuzz expire (session_grace=1, poll_grace=1)
        after = rss_kib(server.process.pid)
        left = stats(server)
    finally:
        server.stop()
    output = server.output
    marks = [i for i, line in enumerate(output) if any(mark in line for mark in BAD_LOG)]
    bad = [line for i in marks[:3] for line in output[i : i + 40]]  # with what follows
    counters = {
        "connections_open_after": left["connections_open"],
        "sessions_after": left["sessions"],
    }
    print(
        json.dumps(
            {**figures.__dict__, "rss_before_kib": before, "rss_after_kib": after, **counters}
        )
    )
    if figures.bystander_lost:
        port = f":{figures.bystander_port}".encode()
        bad += [line for line in server.output if port in line or b"pong" in line]
    for line in bad[:120]:
        sys.stdout.write(line.decode(errors="replace"))
    leftovers = left["connections_open"] != 1 or left["sessions"] != 0
    return 1 if marks or leftovers or figures.received != figures.published else 0


if __name__ == "__main__":
    sys.exit(main())
