"""What a raw subscriber's WebSocket handshake costs pushwire's Python side, without sockets:
`pushwire serve`'s demo app on uvloop, `--handshakes` connections of
`/ws/bench?user=userN` made on stand-in sockets (they take what is written, and nothing
else), each given the load generator's upgrade request in one read, then all closed.

    python -m bench.handshake_cost --handshakes 10000 --rounds 5
    python -m bench.handshake_cost --profile     # where the time goes (cProfile, one round)

Prints CPU microseconds per handshake (open) and per close, and of those the garbage
collector's, for each round after a warm-up: the least is the figure to compare between
trees (the machine's noise only adds). System calls, uvloop and the kernel are not in it:
the connect benchmark (`python -m bench --workloads connect`) measures the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from typing import cast

import uvloop

from pushwire.cli import build_app
from pushwire.config import Config
from pushwire.server.connection import HttpConnection
from pushwire.server.door import Door
from pushwire.server.listener import Server
from pushwire.server.wire import Wire
from pushwire.transports.websocket.connection import WebSocketTransport


class _Socket:
    """A connected socket as the server uses it (uvloop's transport methods); it keeps
    nothing written."""

    def __init__(self, port: int) -> None:
        self.peer = ("127.0.0.1", port)
        self.protocol: asyncio.BaseProtocol | None = None
        self.closing = False
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol | None:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closing

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


def _request(user: int) -> bytes:
    """The load generator's upgrade request (bench/loadgen.c), for user `user`."""
    return (
        f"GET /ws/bench?user=user{user} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _open(door: Door, requests: list[bytes]) -> list[_Socket]:
    sockets = []
    for index, request in enumerate(requests):
        socket = _Socket(10_000 + index % 50_000)
        connection = HttpConnection(door)
        socket.protocol = Wire(connection)  # as the listener makes it
        connection.connection_made(cast(asyncio.Transport, socket))
        connection.data_received(request)
        sockets.append(socket)
    return sockets


def _close(sockets: list[_Socket]) -> None:
    for socket in sockets:
        wire = socket.protocol
        assert isinstance(wire, Wire), "not a connection"
        assert isinstance(wire.to, WebSocketTransport), "the handshake failed"
        wire.connection_lost(None)


async def _measure(handshakes: int, rounds: int, profile: bool) -> None:
    config = Config(max_connections=handshakes * 2, messages_per_second=0)
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, config.gc_full_every)  # as `pushwire serve` does
    app = build_app(config)
    door = Server(app, config).door
    requests = [_request(user) for user in range(handshakes)]
    collecting = [0.0, 0.0]  # when the current collection began, CPU seconds in all

    def collector(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.process_time()
        else:
            collecting[1] += time.process_time() - collecting[0]

    gc.callbacks.append(collector)
    _close(_open(door, requests[: min(2000, handshakes)]))  # warm-up
    await asyncio.sleep(0)
    profiler = cProfile.Profile() if profile else None
    for _ in range(1 if profile else rounds):
        gc.collect()
        collecting[1] = 0.0
        if profiler is not None:
            profiler.enable()
        started = time.process_time()
        sockets = _open(door, requests)
        opened = time.process_time()
        if profiler is not None:
            profiler.disable()
        _close(sockets)
        closed = time.process_time()
        await asyncio.sleep(0)
        print(
            f"open {1e6 * (opened - started) / handshakes:.1f} us, "
            f"close {1e6 * (closed - opened) / handshakes:.1f} us per handshake "
            f"(garbage collector {1e6 * collecting[1] / handshakes:.1f} us)"
        )
    gc.callbacks.remove(collector)
    if profiler is not None:
        stats = pstats.Stats(profiler)
        calls = stats.total_calls  # type: ignore[attr-defined]  # (set by Stats, not stubbed)
        print(f"{calls / handshakes:.0f} Python calls per handshake")
        stats.sort_stats("tottime").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handshake_cost", description=__doc__)
    parser.add_argument("--handshakes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one round's opening")
    args = parser.parse_args()
    uvloop.run(_measure(args.handshakes, args.rounds, args.profile))


if __name__ == "__main__":
    main()
