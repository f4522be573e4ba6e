"""`python -m bench.direct`: direct-message throughput of the hub, in one process.

What it measures: how many direct messages per second the hub sends to a user's sessions,
from `hub.send_everywhere(user, data)` (the API's `POST /api/send/<user>`) to the bytes each
session's transport is handed (WebSocket pushwire.v1 framing), for `--users` users of
`--sessions` sessions each, messages sent round-robin over the users with `--window` in
flight. No sockets: a transport here only counts what it is given, so the figure is the
core's and the broker's cost, not the kernel's.

With `--redis URL` the hub uses a `RedisBroker` (each message goes through Redis and comes
back through its pub/sub, as on a node of a cluster); without, the in-memory broker.

Before/after comparisons run the same command with `PYTHONPATH` pointing at each source
tree (the script uses only `Hub`, `hub.lifecycle.open` and `hub.send_everywhere`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from pushwire import Hub
from pushwire.config import Config
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING


class _CountingTransport:
    """A connection that counts the frames it is handed (nothing is sent anywhere)."""

    name = "websocket"
    framing = ENVELOPE_FRAMING

    def __init__(self) -> None:
        self.receiver: Any = None
        self.frames = 0

    def write(self, data: bytes) -> None:
        self.frames += 1

    def close(self, code: int, reason: str) -> None:
        pass


async def _run(
    users: int, sessions: int, messages: int, window: int, redis: str | None
) -> tuple[float, float]:
    """Messages per second of wall time, and per second of this process's CPU time (less
    sensitive to other work on a shared machine; Redis's own CPU is not in it)."""
    broker = None
    if redis is not None:
        from pushwire.broker.redis import RedisBroker

        broker = RedisBroker(redis, prefix=f"bench{time.monotonic_ns()}:")
        await broker.start()
    hub = Hub(broker, Config())
    transports: list[_CountingTransport] = []
    names = [f"user{i}" for i in range(users)]
    for name in names:
        await hub.direct_messages.prepare_user(name)
        for _ in range(sessions):
            transport = _CountingTransport()
            transports.append(transport)
            session = hub.lifecycle.open(transport, name, resumable=True)  # type: ignore[arg-type]
            # With an inbox, a session's direct messages flow once it was welcomed.
            recover = getattr(hub.direct_messages, "recover", None)
            if recover is not None:
                await recover(session, None)
    expected = messages * sessions * users // users + sum(t.frames for t in transports)
    data = "x" * 100
    semaphore = asyncio.Semaphore(window)

    async def send(index: int) -> None:
        async with semaphore:
            await hub.send_everywhere(names[index % users], data)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(send(i) for i in range(messages)))
    while sum(t.frames for t in transports) < expected:
        await asyncio.sleep(0.001)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if broker is not None:
        await broker.close()
    return messages / elapsed, messages / cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.direct", description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=2, help="sessions per user")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=256, help="messages in flight")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis", default=None, help="a Redis URL: use the Redis broker")
    args = parser.parse_args()
    results = [
        asyncio.run(_run(args.users, args.sessions, args.messages, args.window, args.redis))
        for _ in range(args.runs)
    ]
    rates, cpu_rates = [r for r, _ in results], [c for _, c in results]
    broker = "redis" if args.redis else "memory"
    print(
        f"direct {broker} users={args.users} sessions={args.sessions}: "
        f"median {statistics.median(rates):,.0f} messages/s, "
        f"{statistics.median(cpu_rates):,.0f} per CPU second "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
