"""CPU instructions a raw subscriber's WebSocket handshake costs pushwire's Python side
(open and close), counted by valgrind (callgrind): unlike a timing, the count does not move
with the machine's load, so a cut of a few percent shows.

    apt-get install -y valgrind
    PYTHONPATH=<tree>/src:. python -m bench.instructions [--handshakes 2000]

The workload is `bench.handshake_cost`'s (stand-in sockets, `pushwire serve`'s demo app on
uvloop, `/ws/bench?user=userN`), run twice under valgrind: with no handshake, then with
`--handshakes`; the difference divided by the handshakes is the figure. `--tree` measures
another tree's `src/` and `bench/` (its own `handshake_cost`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import uvloop

from bench import handshake_cost  # (the measured tree's, first on the path)


async def _run(handshakes: int) -> None:
    from pushwire.cli import build_app
    from pushwire.config import Config
    from pushwire.server.listener import Server

    config = Config(max_connections=20_000, messages_per_second=0)
    door = Server(build_app(config), config).door
    requests = [handshake_cost._request(user) for user in range(max(handshakes, 500))]
    handshake_cost._close(handshake_cost._open(door, requests[:500]))  # warm-up
    await asyncio.sleep(0)
    if handshakes:
        handshake_cost._close(handshake_cost._open(door, requests[:handshakes]))
        await asyncio.sleep(0)


def _count(tree: Path, handshakes: int) -> int:
    """Instructions valgrind counted for a whole run of `handshakes` handshakes."""
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,  # (this file, with the tree's own `bench` and `src` on the path)
            "--inside",
            str(handshakes),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind gave no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="a tree with src/, bench/")
    parser.add_argument("--inside", type=int, help=argparse.SUPPRESS)  # (the run valgrind runs)
    args = parser.parse_args()
    if args.inside is not None:
        uvloop.run(_run(args.inside))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    tree = args.tree.resolve()
    base = _count(tree, 0)
    total = _count(tree, args.handshakes)
    print(
        f"{tree}: {(total - base) // args.handshakes:,} instructions per handshake (open + close)"
    )


if __name__ == "__main__":
    main()
