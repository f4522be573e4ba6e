"""`python -m bench`'s command line, parsed into typed options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .harness import BENCH_DIR
from .servers import REPO

WORKLOADS = ("fanout", "echo", "connect", "lab", "redis", "chaos", "soak", "hold")
#: What `--workloads` runs when not given: all but chaos, soak and hold (long runs of their own).
DEFAULT_WORKLOADS = ("fanout", "echo", "connect", "lab", "redis")


@dataclass(frozen=True, slots=True)
class Options:
    """What to run and how (see `python -m bench --help`); --smoke already applied."""

    workloads: list[str]
    subscribers: list[int]  # fan-out sizes N
    redis_subscribers: list[int]
    runs: int  # per figure, a fresh server each
    duration: float  # seconds measured per run
    echo_connections: int
    connections: int  # the connect workload's handshakes
    window: int  # fan-out: messages in flight
    loadgen_procs: int
    targets: str
    smoke: bool
    no_npm: bool
    out: Path
    pushwire_src: Path
    report_only: Path | None
    chaos_messages: int  # the chaos workload: messages over all its runs
    chaos_rate: float
    chaos_seed: int
    chaos_faults: list[str]  # the chaos workload's faults to run, in this order (empty: all)
    soak_connections: int  # the soak workload: well-behaved subscribers
    soak_minutes: float
    hold_connections: int  # the hold workload (bench/hold.py): one process's subscribers
    hold_total: int  # its workers stage: the machine's subscribers
    hold_workers: int  # 0: from the open-file limit
    hold_seconds: float
    hold_messages: int
    hold_stages: list[str]
    #: The redis workload: worker counts of pushwire on Redis (1: the one-process target).
    redis_workers: tuple[int, ...] = (2,)
    #: Also run pushwire's targets from this source tree (redis, fanout, echo, connect).
    baseline_src: Path | None = None


def parse_args(argv: list[str] | None, description: str | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=description)
    parser.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help="comma-separated, from: " + ", ".join(WORKLOADS) + " (default: all but chaos, soak)",
    )
    parser.add_argument("--subscribers", default="1000,10000", help="fan-out sizes N")
    parser.add_argument(
        "--redis-subscribers", default="1000", help="redis workload: fan-out sizes N"
    )
    parser.add_argument(
        "--redis-workers",
        default="2",
        help="redis workload: worker counts of pushwire on Redis, e.g. 1,2,4",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run pushwire's targets from this source tree, named '(baseline)', run by "
        "run alongside (the redis, fanout, echo and connect workloads)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (fresh server each)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--echo-connections", type=int, default=100)
    parser.add_argument(
        "--connections", type=int, default=10000, help="connect workload: handshakes"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=16,
        help="fan-out: messages in flight (not yet at every subscriber)",
    )
    parser.add_argument(
        "--loadgen-procs",
        type=int,
        default=1,
        help="fan-out: split the subscribers over K load generator processes (for a machine "
        "with more than 2 cores: they run on every core but the server's)",
    )
    parser.add_argument(
        "--targets",
        default="",
        help="only targets whose name contains one of these (=NAME: exactly that name)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check: 1 run, tiny sizes, about 5 s per workload",
    )
    parser.add_argument("--no-npm", action="store_true", help="do not install the Node peers")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument(
        "--pushwire-src",
        type=Path,
        default=REPO / "src",
        help="the pushwire source tree to run (e.g. a clean `git worktree`)",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="RESULTS_JSON",
        help="rewrite results.md and the chart from a results.json, run nothing",
    )
    parser.add_argument(
        "--chaos-messages",
        type=int,
        default=100_000,
        help="chaos: messages published over all its runs (one run per fault); the long "
        "run of docs/delivery.md is 1010000",
    )
    parser.add_argument(
        "--chaos-rate", type=float, default=400.0, help="chaos: messages per second"
    )
    parser.add_argument(
        "--chaos-seed", type=int, default=1, help="chaos: the first run's seed (replay)"
    )
    parser.add_argument(
        "--chaos-faults",
        default="",
        help="chaos: comma-separated faults to run, in this order (default: all); each keeps "
        "its seed and its share of --chaos-messages, so one fault of a long run replays alone",
    )
    parser.add_argument(
        "--soak-connections",
        type=int,
        default=10_000,
        help="soak: well-behaved subscribers on mixed transports (besides the abusive slice)",
    )
    parser.add_argument("--soak-minutes", type=float, default=30.0, help="soak: its length")
    parser.add_argument(
        "--hold-connections",
        type=int,
        default=0,
        help="hold: subscribers of one process (0: its default max_connections less 500, "
        "rounded down to thousands)",
    )
    parser.add_argument(
        "--hold-total", type=int, default=100_000, help="hold: subscribers over the workers"
    )
    parser.add_argument(
        "--hold-workers",
        type=int,
        default=0,
        help="hold: worker processes for --hold-total (0: enough for 80%% of each one's bound)",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=45.0,
        help="hold: seconds the subscribers stay idle (past the 40 s of the default keepalive)",
    )
    parser.add_argument(
        "--hold-messages", type=int, default=20, help="hold: broadcasts, one at a time"
    )
    parser.add_argument(
        "--hold-stages",
        default="one,pushwire,workers",
        help="hold: comma-separated, from: one (one process, /ws/<ch>), pushwire (one "
        "process, /pushwire), workers (--workers over Redis)",
    )
    # argparse's Namespace is untyped: each value gets its type here, once.
    args = parser.parse_args(argv)
    workloads: list[str] = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    subscribers = [int(n) for n in args.subscribers.split(",") if n]
    redis_subscribers = [int(n) for n in args.redis_subscribers.split(",") if n]
    runs: int = args.runs
    duration: float = args.duration
    echo_connections: int = args.echo_connections
    connections: int = args.connections
    chaos_messages: int = args.chaos_messages
    if args.smoke:
        chaos_messages = min(chaos_messages, 2000)
        runs, duration = 1, 0.5
        subscribers = [min(subscribers[0], 50)]
        redis_subscribers = [min(redis_subscribers[0], 50)]
        echo_connections, connections = 20, 200
    hold_connections: int = args.hold_connections
    hold_total: int = args.hold_total
    hold_workers: int = args.hold_workers
    hold_seconds: float = args.hold_seconds
    hold_messages: int = args.hold_messages
    hold_stages = [s for s in args.hold_stages.split(",") if s]
    if set(hold_stages) - {"one", "pushwire", "workers"}:
        parser.error("--hold-stages takes one, pushwire, workers")
    if args.smoke:
        hold_connections, hold_total = 200, min(hold_total, 600)
        hold_workers, hold_seconds, hold_messages = hold_workers or 2, 2.0, 3
    if runs < 1:
        parser.error("--runs must be at least 1")
    if args.loadgen_procs < 1:
        parser.error("--loadgen-procs must be at least 1")
    return Options(
        workloads=workloads,
        subscribers=subscribers,
        redis_subscribers=redis_subscribers,
        runs=runs,
        duration=duration,
        echo_connections=echo_connections,
        connections=connections,
        window=args.window,
        loadgen_procs=args.loadgen_procs,
        targets=args.targets,
        smoke=args.smoke,
        no_npm=args.no_npm,
        out=args.out,
        pushwire_src=args.pushwire_src,
        report_only=args.report_only,
        chaos_messages=chaos_messages,
        chaos_rate=args.chaos_rate,
        chaos_seed=args.chaos_seed,
        chaos_faults=[f for f in args.chaos_faults.split(",") if f],
        soak_connections=args.soak_connections,
        soak_minutes=args.soak_minutes,
        hold_connections=hold_connections,
        hold_total=hold_total,
        hold_workers=hold_workers,
        hold_seconds=hold_seconds,
        hold_messages=hold_messages,
        hold_stages=hold_stages,
        redis_workers=tuple(int(n) for n in args.redis_workers.split(",") if n),
        baseline_src=args.baseline_src,
    )
