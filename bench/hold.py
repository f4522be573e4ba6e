"""`python -m bench --workloads hold`: as many idle subscribers as the machine allows (issue 18).

Each stage is a fresh server and one run of the load generator (bench/loadgen.c, fan-out mode):
it opens the subscribers from several processes, each connection bound to one of several
loopback source addresses (127.0.1.x: each has its own ephemeral port range), holds them idle
for `--hold-seconds` (answering the server's WebSocket pings), then publishes
`--hold-messages` broadcasts one at a time (window 1) and stops by itself.

- `one process`: `pushwire serve` with its default `max_connections` (the open-file limit,
  raised to the hard one at start, minus `fd_reserve`) and `--hold-connections` subscribers
  on `/ws/<channel>` (default: that bound less a margin, 19,000 where the hard limit is 20,000);
- `one process, /pushwire`: the same on `/pushwire` (pushwire.v1), each with one subscription;
- `workers`: `pushwire serve --workers W --broker redis://…` (SO_REUSEPORT, a redis-server of
  the benchmark's own) with `--hold-total` subscribers (default 100,000) on `/ws/<channel>`.

Measured: handshakes/s while filling, RSS of every process (server, workers, redis-server, load
generator) and per connection, the kernel's socket memory (/proc/net/sockstat, and the slab
caches of /proc/slabinfo when readable) per connection, each broadcast's time until the last
subscriber had it, the per-delivery latency, and the server's CPU per broadcast. Counts and
memory are robust on a shared machine; timings are not.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import BenchError, build_loadgen, drive_loadgen, python, rss_bytes, start_server
from .options import Options
from .records import LoadgenResult
from .redis_fanout import (
    RedisServer,
    _stop,
    _wait_ready,
    connections_per_process,
    listening_sockets,
    process_tree,
)
from .servers import HELLO, PW_V1_PUB, REPO, _publisher, _ws

__all__ = ["plan", "run_hold"]

PAGE = os.sysconf("SC_PAGE_SIZE")
#: Descriptors `pushwire serve` keeps for other uses by default (Config.fd_reserve).
FD_RESERVE = 256
#: Connections a stage leaves below a process's bound (the publisher, a margin).
MARGIN = 500
#: Subscribers per load generator process, below its open-file limit.
PER_LOADGEN = 15_000
#: Subscribers per loopback source address, well within one ephemeral port range.
PER_SOURCE = 20_000
CHANNEL = "bench"
#: The slab caches a connected TCP socket lives in (its sock, inode, file, dentry, epoll
#: entry); growth elsewhere on a shared machine is other work's.
SOCKET_CACHES = (
    "TCP",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
    "tcp_bind_bucket",
    "tcp_bind2_bucket",
)


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    subscribers: int
    workers: int  # 1: one process with the memory broker; more: over Redis
    drive: list[str]  # the load generator's subscriber and publisher arguments


def process_bound() -> int:
    """What one `pushwire serve` process holds by default here: the hard open-file limit
    minus `fd_reserve` (`max_connections` of 0)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = soft if hard == resource.RLIM_INFINITY else hard
    return min(limit, 1 << 20) - FD_RESERVE


def plan(args: Options) -> list[Stage]:
    """The stages `args` asks for, sizes derived from this machine's limits where not given."""
    bound = process_bound()
    one = args.hold_connections or max(1, (bound - MARGIN) // 1000 * 1000)
    total = args.hold_total
    workers = args.hold_workers or max(2, math.ceil(total / (bound * 0.8)))
    ws = [*_ws(f"/ws/{CHANNEL}"), *_publisher(f"/ws/{CHANNEL}")]
    v1 = [
        *_ws("/pushwire", "--subprotocol", "pushwire.v1", "--init", HELLO),
        "--init",
        json.dumps({"type": "subscribe", "channel": CHANNEL}, separators=(",", ":")),
        "--ready",
        "subscribed",
        *PW_V1_PUB,
    ]
    stages = {
        "one": Stage("one process, /ws/<channel>", one, 1, ws),
        "pushwire": Stage("one process, /pushwire + 1 subscription", one, 1, v1),
        "workers": Stage(f"{workers} workers over Redis, /ws/<channel>", total, workers, ws),
    }
    return [stages[name] for name in args.hold_stages]


def sockstat() -> dict[str, int]:
    """The TCP line of /proc/net/sockstat: sockets in use, allocated, buffer memory (bytes)."""
    out = {"inuse": 0, "alloc": 0, "mem_bytes": 0}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                fields = line.split()[1:]
                values = dict(zip(fields[::2], map(int, fields[1::2]), strict=False))
                out = {
                    "inuse": values.get("inuse", 0),
                    "alloc": values.get("alloc", 0),
                    "mem_bytes": values.get("mem", 0) * PAGE,
                }
    return out


def slabs() -> dict[str, int]:
    """Bytes held by each slab cache (active objects x object size); empty if unreadable."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
            fields = line.split()
            out[fields[0]] = int(fields[1]) * int(fields[3])
    return out


def open_files(pid: int) -> int:
    """The soft open-file limit of process `pid` (0 if unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


def loadgen_pids() -> list[int]:
    """This process's load generator processes (their command name starts with loadgen)."""
    pids = []
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith("loadgen"):
                pids.append(pid)
    return pids


def _cpu(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(fields[i]) for i in (11, 12)) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _rss(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            out.append(rss_bytes(pid))
    return out


def snapshot(servers: list[int], redis: int | None) -> dict[str, Any]:
    return {
        "server_rss": _rss(servers),
        "server_cpu_s": sum(_cpu(pid) for pid in servers),
        "redis_rss": _rss([redis])[0] if redis else 0,
        "redis_cpu_s": _cpu(redis) if redis else 0.0,
        "loadgen_rss": _rss(loadgen_pids()),
        "sockstat": sockstat(),
        "slabs": slabs(),
        "time": time.monotonic(),
    }


def run_stage(stage: Stage, args: Options, binary: Path, log_dir: Path) -> dict[str, Any]:
    """One stage: a fresh server (and redis-server), the load generator, the figures."""
    command = [
        *[python(), "-m", "pushwire", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        # the publisher sends as fast as broadcasts complete: no per-session rate for it
        *["--set", "messages_per_second=0", "--log-level", "warning"],
    ]
    if args.smoke:  # pings within the short hold: the load generator must answer them
        command += ["--set", "ping_interval=0.5", "--set", "ping_timeout=0.5"]
    redis = None
    server = None
    env = {"PYTHONPATH": str(args.pushwire_src.resolve())}
    try:
        if stage.workers > 1:
            redis = RedisServer(log_dir / "hold-redis-server.log")
            command += ["--workers", str(stage.workers), "--broker", redis.url]
        log = log_dir / f"hold-{stage.subscribers}-{stage.workers}.log"
        server = start_server(command, REPO, log, False, None, env)
        workers = stage.workers
        _wait_ready(server, lambda s: listening_sockets(s.port) >= workers)
        time.sleep(0.5)  # every worker's start-up allocations done before the baseline
        return _drive(stage, args, binary, server.port, server.pid, redis)
    finally:
        if server is not None:
            _stop(server)
        if redis is not None:
            redis.stop()


def _drive(
    stage: Stage, args: Options, binary: Path, port: int, pid: int, redis: RedisServer | None
) -> dict[str, Any]:
    n = stage.subscribers
    procs = max(2, math.ceil(n / PER_LOADGEN))
    sources = max(1, math.ceil(n / PER_SOURCE))
    argv = [str(binary), "--mode", "fanout", "--port", str(port), "--sync", "--conns", str(n)]
    argv += [*stage.drive, "--procs", str(procs), "--sources", str(sources)]
    argv += ["--hold", str(args.hold_seconds), "--window", "1"]
    argv += ["--messages", str(args.hold_messages), "--duration", "300"]
    argv += ["--timeout", str(60 + n / 100), "--drain", "30"]  # filling: slow on a busy machine
    servers = process_tree(pid)  # with --workers: the parent (supervising) and its workers
    redis_pid = redis.pids[0] if redis else None
    marks: dict[str, dict[str, Any]] = {"before": snapshot(servers, redis_pid)}
    spread: list[int] = []

    def mark(name: str) -> None:
        nonlocal spread
        marks[name] = snapshot(servers, redis_pid)
        if name == "open":
            spread = connections_per_process(servers, port)

    timeout = 120 + n / 50 + args.hold_seconds + args.hold_messages * (1 + n / 10_000)
    result = drive_loadgen(argv, mark, timeout)
    return figures(stage, result, marks, spread, servers, procs, sources)


def figures(
    stage: Stage,
    result: LoadgenResult,
    marks: dict[str, dict[str, Any]],
    spread: list[int],
    servers: list[int],
    procs: int,
    sources: int,
) -> dict[str, Any]:
    """A stage's figures, from the load generator's result and the samples at its marks."""
    n = stage.subscribers
    out: dict[str, Any] = {
        "stage": stage.name,
        "subscribers": n,
        "workers": stage.workers,
        "loadgen_procs": procs,
        "source_addresses": sources,
        "open_file_limits": [open_files(pid) for pid in servers],
        "loadgen": result,
        "ok": bool(result["ok"]) and not (result["lost"] or result["duplicates"]),
    }
    before, opened = marks["before"], marks.get("open")
    if opened is None:
        return out
    held = opened["server_rss"]
    slab_growth = {
        name: size - before["slabs"].get(name, 0)
        for name, size in opened["slabs"].items()
        if size - before["slabs"].get(name, 0) > 0
    }
    kernel = sum(slab_growth.get(name, 0) for name in SOCKET_CACHES)
    buffers = opened["sockstat"]["mem_bytes"] - before["sockstat"]["mem_bytes"]
    out |= {
        "connections_per_worker": spread,
        "handshakes_per_s": n / result["open_s"] if result.get("open_s") else None,
        # robust where timings are not: CPU from the first handshake to the last one
        "server_cpu_per_handshake_us": (marks["ready"]["server_cpu_s"] - before["server_cpu_s"])
        / n
        * 1e6,
        "server_rss_before": before["server_rss"],
        "server_rss_open": held,
        "redis_rss_open": opened["redis_rss"],
        "loadgen_rss_open": opened["loadgen_rss"],
        "rss_per_connection": (sum(held) - sum(before["server_rss"])) / n,
        "sockstat_before": before["sockstat"],
        "sockstat_open": opened["sockstat"],
        "kernel_buffers_per_connection": buffers / n,
        # both ends of a loopback connection are on this machine: two sockets each
        "kernel_slab_per_connection": kernel / n if kernel else None,
        "kernel_slab_per_connection_by_cache": {
            name: slab_growth.get(name, 0) / n for name in SOCKET_CACHES
        },
        "slab_top": dict(sorted(slab_growth.items(), key=lambda kv: -kv[1])[:10]),
    }
    start, end = marks.get("start"), marks.get("end")
    if start and end:
        cpu = end["server_cpu_s"] - start["server_cpu_s"]
        published = max(1, result["published"])
        out |= {
            "server_rss_after_hold": start["server_rss"],
            "server_cpu_idle_per_s": (start["server_cpu_s"] - opened["server_cpu_s"])
            / (start["time"] - opened["time"]),
            "server_cpu_per_broadcast_ms": cpu / published * 1000,
            "redis_cpu_per_broadcast_ms": (end["redis_cpu_s"] - start["redis_cpu_s"])
            / published
            * 1000,
            "server_cpu_per_delivery_us": cpu / max(1, result["deliveries"]) * 1e6,
        }
    return out


def table(stages: list[dict[str, Any]]) -> str:
    """The stages as one markdown table, a column each."""

    def mib(values: list[int]) -> str:
        return " + ".join(f"{v / 2**20:,.0f}" for v in values) + " MiB"

    rows: list[tuple[str, list[str]]] = []

    def row(name: str, cell: Any) -> None:
        rows.append((name, [_cell(cell, s) for s in stages]))

    row("subscribers held", lambda s: f"{s['loadgen']['ready']:,} of {s['subscribers']:,}")
    row("connections per worker", lambda s: "/".join(map(str, s.get("connections_per_worker", []))))
    row("open-file limit per server process", lambda s: f"{s['open_file_limits'][0]:,}")
    row("handshakes/s while filling (noisy)", lambda s: f"{s['handshakes_per_s']:,.0f}")
    row("server CPU per handshake", lambda s: f"{s['server_cpu_per_handshake_us']:,.0f} us")
    row("server RSS, each process, held", lambda s: mib(s["server_rss_open"]))
    row("server RSS per connection", lambda s: f"{s['rss_per_connection'] / 1024:.1f} KiB")
    row("redis-server RSS", lambda s: mib([s["redis_rss_open"]]) if s["redis_rss_open"] else "-")
    row("load generator RSS, each process", lambda s: mib(s["loadgen_rss_open"]))
    row("TCP sockets in use (sockstat)", lambda s: f"{s['sockstat_open']['inuse']:,}")
    row("TCP buffer memory (sockstat mem)", lambda s: mib([s["sockstat_open"]["mem_bytes"]]))
    row(
        "kernel slab per connection (2 sockets)",
        lambda s: f"{s['kernel_slab_per_connection'] / 1024:.1f} KiB",
    )
    row("held idle (s), closed meanwhile", lambda s: f"{s['hold_s']:g}, {s['closed']}")
    row("server CPU while held idle", lambda s: f"{s['server_cpu_idle_per_s']:.1%} of a core")
    row("broadcasts", lambda s: str(s["loadgen"]["broadcast_ms"]["n"]))
    row(
        "time to the last subscriber, p50 / max (noisy)",
        lambda s: "{p50:,.0f} / {max:,.0f} ms".format(**s["loadgen"]["broadcast_ms"]),
    )
    row(
        "delivery latency p50 / p99 (noisy)",
        lambda s: "{:,.0f} / {:,.0f} ms".format(
            s["loadgen"]["latency_us"]["p50"] / 1000, s["loadgen"]["latency_us"]["p99"] / 1000
        ),
    )
    row("server CPU per broadcast (noisy)", lambda s: f"{s['server_cpu_per_broadcast_ms']:,.0f} ms")
    row("server CPU per delivery", lambda s: f"{s['server_cpu_per_delivery_us']:.2f} us")
    row("lost / duplicated", lambda s: f"{s['loadgen']['lost']} / {s['loadgen']['duplicates']}")
    head = "| | " + " | ".join(s["stage"] for s in stages) + " |"
    lines = [head, "|---|" + "---:|" * len(stages)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines) + "\n"


def _cell(cell: Any, stage: dict[str, Any]) -> str:
    try:
        return str(cell(stage))
    except (KeyError, TypeError, ZeroDivisionError, IndexError):
        return "-"


def run_hold(args: Options, command: str) -> int:
    """Every stage `args` asks for, one after the other; hold.md and hold.json in --out."""
    binary = build_loadgen(args.out / "build")
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    status = 0
    for stage in plan(args):
        print(f"hold: {stage.name}, {stage.subscribers:,} subscribers", flush=True)
        try:
            found = run_stage(stage, args, binary, log_dir)
        except BenchError as exc:
            print(f"  error: {exc}", flush=True)
            status = 1
            continue
        found["hold_s"] = args.hold_seconds
        found["closed"] = found["loadgen"]["closed_early"]
        if not found["ok"]:
            status = 1
            print(f"  FAILED: {found['loadgen']['first_error']}", flush=True)
        done.append(found)
    head = f"Command: `{command}`  \nDate: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n\n"
    text = head + (table(done) if done else "no stage completed\n")
    (args.out / "hold.md").write_text(text)
    (args.out / "hold.json").write_text(json.dumps(done, indent=1))
    print(text)
    print(f"written: {args.out / 'hold.md'}, {args.out / 'hold.json'}")
    return status
