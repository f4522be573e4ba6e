"""What an idle subscriber costs the server: RSS growth per connection, per transport.

    PYTHONPATH=src:. python -m bench.idle --kind ws --subscribers 5000
    PYTHONPATH=src:. python -m bench.idle --kind ws --subscribers 3000 --trace

A pushwire server runs in this process (uvloop, the default `Config`); a second process
connects `--subscribers` clients to it, spread over 10 channels, and holds them open. The
server's RSS after they are all in, less its RSS before (200 warm-up connections of the same
kind are made first, so one-time allocations are not counted), divided by their number, is
the figure. `--trace` runs tracemalloc instead and prints where the bytes go, per allocation
site (RSS is then inflated by tracemalloc's own bookkeeping: read the sites, not the total).

Kinds: `ws` (raw `/ws/<channel>`), `pushwire` (pushwire.v1 over a WebSocket at `/pushwire`,
one subscription), `sse` (raw `/sse/<channel>`), `longpoll` (pushwire.v1 long-polling at
`/pushwire`, one subscription, a poll held open).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc
from typing import Final

KINDS: Final = ("ws", "pushwire", "sse", "longpoll")
CHANNELS: Final = 10
BATCH: Final = 200  # connections opened at once by the client process


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _hold_clients(port: int, n: int, kind: str) -> None:
    """The client process: open `n` subscribers, say `ready`, hold them until stdin ends."""
    from pushwire.client import connect
    from tests.soak.fleet import RawSse, RawWebSocket, Tally, open_raw

    held: list[object] = []

    async def one(i: int) -> object:
        channel = f"room-{i % CHANNELS}"
        if kind in ("ws", "sse"):
            raw = RawSse if kind == "sse" else RawWebSocket
            return await open_raw(raw, Tally(channel, "x"), "127.0.0.1", port)
        transport = "websocket" if kind == "pushwire" else "longpoll"
        url = f"http://127.0.0.1:{port}/pushwire?user=user{i}"
        client = await connect(url, transports=(transport,), reconnect=False)
        await client.subscribe(channel)
        return client

    for start in range(0, n, BATCH):
        held += await asyncio.gather(*(one(i) for i in range(start, min(n, start + BATCH))))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def _clients(port: int, n: int, kind: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.idle",
        "--hold",
        str(port),
        "--kind",
        kind,
        "--subscribers",
        str(n),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    if not line.startswith(b"ready"):
        raise RuntimeError(f"the client process did not connect its {kind} subscribers")
    return process


async def _release(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"\n")
    for process in processes:
        await process.wait()


async def _measure(kind: str, n: int, trace: bool) -> None:
    from pushwire.app import App
    from pushwire.config import Config
    from pushwire.serve import serve

    port = 18000 + os.getpid() % 2000
    app = App(config=Config(port=port))
    server = asyncio.create_task(serve(app, announce=False))
    await asyncio.sleep(1)
    warm = await _clients(port, BATCH, kind)
    await asyncio.sleep(1)
    gc.collect()
    if trace:
        tracemalloc.start(12)
    before = tracemalloc.take_snapshot() if trace else None
    rss_before = _rss()
    held = await _clients(port, n, kind)
    await asyncio.sleep(2)
    gc.collect()
    rss_after = _rss()
    per = (rss_after - rss_before) / n
    print(f"kind={kind} subscribers={n} RSS per idle subscriber {per:.0f} B")
    if before is not None:
        after = tracemalloc.take_snapshot()
        traced = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        print(f"traced per subscriber {traced / n:.0f} B (tracemalloc inflates RSS)")
        for stat in after.compare_to(before, "traceback")[:60]:
            if stat.size_diff / n < 16:
                continue
            frames = [
                f"{f.filename.split('site-packages/')[-1].split('src/')[-1]}:{f.lineno}"
                for f in stat.traceback
                if "asyncio" not in f.filename
            ][-4:]
            print(
                f"{stat.size_diff / n:7.0f} B {stat.count_diff / n:5.1f} obj  "
                + " <- ".join(reversed(frames))
            )
    await _release(held, warm)
    server.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=KINDS, default="ws")
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--trace", action="store_true", help="where the bytes go (tracemalloc)")
    parser.add_argument("--hold", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.hold:
        asyncio.run(_hold_clients(args.hold, args.subscribers, args.kind))
        return
    uvloop.run(_measure(args.kind, args.subscribers, args.trace))


if __name__ == "__main__":
    main()
