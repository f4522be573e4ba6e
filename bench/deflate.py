"""`python -m bench.deflate`: what permessage-deflate costs a fan-out, and what it saves.

One pushwire server (`--websocket-compression`, pinned to the first core when there are two),
`--subscribers` raw subscribers of `/ws/room` (hand-made handshakes, in this process), and
one publisher that sends `--messages` realistic JSON chat messages (about 300 bytes each)
with at most `--window` not yet delivered to every subscriber. Run twice on fresh servers:
the subscribers offering permessage-deflate, then not. Reported per run: deliveries per
server CPU-second (the server's user + system time over the publishing phase, from /proc),
and wire bytes per delivery (frame headers included). Every subscriber must receive every
message (counted by frames); one subscriber's messages are decompressed and compared.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import random
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from bench.harness import cores, cpu_seconds, python, start_server

ROOT = Path(__file__).resolve().parents[1]
_SENTENCE = (
    "the design review is moved to three so bring notes on the new onboarding flow and the "
    "latency graphs from last week we should also decide about the release date and who "
    "takes the on call shift during the holidays thanks everyone see you there"
)
WORDS = _SENTENCE.split(" ")


def chat_message(seq: int, rng: random.Random) -> bytes:
    """A chat message as an app would publish it: ids, names, a timestamp, a sentence."""
    return json.dumps(
        {
            "type": "chat.message",
            "id": f"msg_{seq:08d}",
            "room": "general",
            "author": {"id": f"u_{rng.randrange(10**6):06d}", "name": rng.choice(["Alice", "Bob"])},
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(12, 30))),
            "sent_at": f"2026-12-06T12:{seq // 60 % 60:02d}:{seq % 60:02d}Z",
            "reactions": [],
            "reply_to": None,
        }
    ).encode()


class Subscriber(asyncio.Protocol):
    """Counts the frames and bytes it receives; `keep` keeps the frames' payloads."""

    def __init__(self, keep: bool) -> None:
        self.buffer = b""
        self.frames = 0
        self.bytes = 0
        self.keep = keep
        self.payloads: list[tuple[int, bytes]] = []
        self.head = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            self.head.set_result(self.buffer[:end].decode())
            data, self.buffer = self.buffer[end + 4 :], b""
        self.bytes += len(data)
        buffer = self.buffer + data if self.buffer else data
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if end - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                start += 2
            if start + length > end:
                break
            first = buffer[offset]
            opcode = first & 0x0F
            if opcode == 0x9:  # the server's Ping: answer it (a zero mask leaves the payload)
                pong = buffer[start : start + length]
                self.transport.write(bytes((0x8A, 0x80 | length)) + b"\0\0\0\0" + pong)
            elif opcode in (0x1, 0x2):
                if self.keep:
                    self.payloads.append((first, buffer[start : start + length]))
                self.frames += 1
            offset = start + length
        self.buffer = buffer[offset:]


async def run(
    port: int, subscribers: int, messages: int, window: int, offer: bool, pid: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    members: list[Subscriber] = []
    transports: list[asyncio.Transport] = []
    for i in range(subscribers):
        make = functools.partial(Subscriber, i == 0)
        transport, protocol = await loop.create_connection(make, "127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if offer else ""
        transport.write(
            (
                f"GET /ws/room HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extension}\r\n"
            ).encode()
        )
        members.append(protocol)
        transports.append(transport)
    heads = await asyncio.gather(*(m.head for m in members))
    agreed = sum("permessage-deflate" in head for head in heads)
    # The publisher: a raw WebSocket client that sends masked frames, is not a subscriber.
    from websockets.asyncio.client import connect

    rng = random.Random(7)
    payloads = [chat_message(seq, rng) for seq in range(messages)]
    async with connect(f"ws://127.0.0.1:{port}/ws/room", compression=None) as publisher:
        # The publisher is a member too; its own copies are not counted. Wait for them
        # to be read so that its socket does not back up.
        drained = asyncio.ensure_future(_drain(publisher, messages))
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        total = subscribers * messages
        deadline = time.monotonic() + 60
        for sent, payload in enumerate(payloads, 1):
            await publisher.send(payload.decode())
            while sum(m.frames for m in members) < (sent - window) * subscribers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"message {sent - window} not delivered within 60 s")
                await asyncio.sleep(0.001)
            deadline = time.monotonic() + 60
        deadline = time.monotonic() + 60
        while sum(m.frames for m in members) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        cpu, wall = cpu_seconds(pid) - cpu_before, time.perf_counter() - wall_before
        await drained
    delivered = sum(m.frames for m in members)
    received = [_inflate(first, payload) for first, payload in members[0].payloads]
    for opened in transports:
        opened.close()
    return {
        "offer": offer,
        "agreed": agreed,
        "deliveries": delivered,
        "complete": delivered == total and received == payloads,
        "server_cpu_s": cpu,
        "wall_s": wall,
        "deliveries_per_cpu_s": delivered / cpu if cpu else 0.0,
        "bytes_per_delivery": sum(m.bytes for m in members) / delivered if delivered else 0.0,
        "payload_bytes": sum(map(len, payloads)) / messages,
    }


async def _drain(publisher: Any, count: int) -> None:
    for _ in range(count):
        await publisher.recv()


def _inflate(first: int, payload: bytes) -> bytes:
    if first & 0x40:
        return zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pushwire-src", default=str(ROOT / "src"))
    args = parser.parse_args()
    pin = cores()
    results: list[dict[str, Any]] = []
    for run_index in range(args.runs):
        for offer in (True, False):
            log = Path("/tmp") / f"bench-deflate-{os.getpid()}.log"
            command = [
                python(), "-m", "pushwire", "serve", "--host", "127.0.0.1", "--port", "{port}",
                "--log-level", "warning", "--websocket-compression",
                "--set", "max_connections=30000",
            ]  # fmt: skip
            env = {"PYTHONPATH": args.pushwire_src}
            server = start_server(command, ROOT, log, False, pin[0] if pin else None, env)
            try:
                result = asyncio.run(
                    run(
                        server.port, args.subscribers, args.messages, args.window, offer, server.pid
                    )
                )
            finally:
                server.stop()
            result["run"] = run_index + 1
            results.append(result)
            print(json.dumps(result), flush=True)
    _report(results)


def _report(results: list[dict[str, Any]]) -> None:
    def median(offer: bool, key: str) -> float:
        values = sorted(float(r[key]) for r in results if r["offer"] is offer)
        return values[len(values) // 2]

    compressed, plain = median(True, "deliveries_per_cpu_s"), median(False, "deliveries_per_cpu_s")
    size_c, size_p = median(True, "bytes_per_delivery"), median(False, "bytes_per_delivery")
    print()
    print("| subscribers offer | deliveries per server CPU-s | wire bytes per delivery |")
    print("|---|---:|---:|")
    print(f"| permessage-deflate | {compressed:,.0f} | {size_c:,.1f} |")
    print(f"| nothing (plain frames) | {plain:,.0f} | {size_p:,.1f} |")
    print(f"| compressed / plain | {compressed / plain:.2f} | {size_c / size_p:.2f} |")
    print(f"all complete: {all(r['complete'] for r in results)}")


if __name__ == "__main__":
    main()
