"""`python -m bench`: run the workloads on pushwire and its peers, write table, JSON and chart."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from .harness import BENCH_DIR, BenchError, build_loadgen, cores, run_loadgen, running
from .lab_json import write_lab
from .redis_fanout import RedisTarget, RedisWorkload, redis_targets
from .report import Case, chart, markdown
from .servers import REPO, Target, install_node_peers, lab_targets, targets, versions

WORKLOADS = ("fanout", "echo", "connect", "lab", "redis")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated, from: " + ", ".join(WORKLOADS),
    )
    parser.add_argument("--subscribers", default="1000,10000", help="fan-out sizes N")
    parser.add_argument(
        "--redis-subscribers", default="1000", help="redis workload: fan-out sizes N"
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
    args = parser.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    args.subscribers = [int(n) for n in args.subscribers.split(",") if n]
    args.redis_subscribers = [int(n) for n in args.redis_subscribers.split(",") if n]
    if args.smoke:
        args.runs, args.duration = 1, 0.5
        args.subscribers = [min(args.subscribers[0], 50)]
        args.redis_subscribers = [min(args.redis_subscribers[0], 50)]
        args.echo_connections, args.connections = 20, 200
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.loadgen_procs < 1:
        parser.error("--loadgen-procs must be at least 1")
    return args


def plan(args: argparse.Namespace) -> list[tuple[Case, Target | RedisTarget]]:
    """Every (case, target) to run, in order."""
    wanted = [t for t in args.targets.split(",") if t]

    def chosen(target: Target) -> bool:
        name = target.name.lower()
        return not wanted or any(
            name == w[1:].lower()
            if w.startswith("=")
            else w.lower() in name or w.lower() == target.server
            for w in wanted
        )

    out: list[tuple[Case, Target | RedisTarget]] = []
    for workload in args.workloads:
        if workload == "redis":  # bench/redis_fanout.py
            for n in args.redis_subscribers:
                for entry in redis_targets():
                    if chosen(entry.target):
                        t = entry.target
                        out.append((Case(workload, t.name, t.server, t.transport, n), entry))
            continue
        if workload == "lab":
            for target in lab_targets():
                if not chosen(target):
                    continue
                for sub, drive_name, n in [
                    ("lab-fanout", "fanout", args.subscribers[0]),
                    ("lab-echo", "echo", args.echo_connections),
                ]:
                    if target.drive(drive_name, n) is not None:
                        out.append(
                            (Case(sub, target.name, target.server, target.transport, n), target)
                        )
            continue
        sizes = {
            "fanout": args.subscribers,
            "echo": [args.echo_connections],
            "connect": [args.connections],
        }[workload]
        for n in sizes:
            for target in targets():
                if chosen(target) and target.drive(workload, n) is not None:
                    out.append(
                        (Case(workload, target.name, target.server, target.transport, n), target)
                    )
    return out


def run_case(
    case: Case, target: Target, args: argparse.Namespace, binary: Path, log_dir: Path, index: int
) -> None:
    """Run `index` of `case`: a fresh server process, one load generator run."""
    pins = cores()
    server_pin, load_pin = pins if pins else (None, None)
    drive = target.drive(case.workload.removeprefix("lab-"), case.n)
    assert drive is not None
    drive.args += [
        "--duration",
        str(args.duration),
        "--window",
        str(args.window),
        "--timeout",
        str(30 + case.n / 200),
    ]
    if drive.mode == "fanout" and args.loadgen_procs > 1:
        drive.args += ["--procs", str(min(args.loadgen_procs, case.n))]
    log = log_dir / f"{case.workload}-{case.n}-{target.name}-{index}.log".replace(" ", "_").replace(
        "/", "_"
    )
    try:
        with running(target.command, REPO, log, target.tcp, server_pin, target.env) as server:
            run = run_loadgen(binary, drive, server, load_pin, timeout=120 + case.n / 100)
        case.runs.append(run.as_dict())
    except BenchError as exc:
        case.errors.append(str(exc)[:300])
    status = case.runs[-1] if case.runs and len(case.runs) == index + 1 else None
    _progress(case, index, status)


def run_interleaved(
    planned: list[tuple[Case, Target]], args: argparse.Namespace, binary: Path, log_dir: Path
) -> None:
    """Run 1 of every case, then run 2 of every case, ...: a machine that slows down for a
    while (it is shared) slows every server's figure alike instead of one server's."""
    runnable = []
    for case, target in planned:
        case.skipped = target.requirement()
        if case.skipped:
            print(f"{case.workload} N={case.n} {case.target}: skipped: {case.skipped}", flush=True)
        else:
            runnable.append((case, target))
    for index in range(args.runs):
        for case, target in runnable:
            print(f"{case.workload} N={case.n} {case.target}", flush=True)
            run_case(case, target, args, binary, log_dir, index)


def _progress(case: Case, index: int, run: dict | None) -> None:
    if run is None:
        print(f"  run {index + 1}: error: {case.errors[-1]}", flush=True)
        return
    lg = run["loadgen"]
    rate = lg["deliveries"] / lg["measured_s"] if lg["measured_s"] else 0.0
    per_cpu = lg["deliveries"] / run["server_cpu_s"] if run["server_cpu_s"] else 0.0
    flag = ("  INVALID: " + "; ".join(run["invalid"])) if run["invalid"] else ""
    if run.get("loadgen_limited") and not flag:
        flag = "  (load generator-limited: compare per server CPU-s)"
    print(
        f"  run {index + 1}: {rate:,.0f}/s ({per_cpu:,.0f} per server CPU-s) "
        f"p50 {lg['latency_us']['p50'] / 1000:.2f} ms "
        f"lost {lg['lost']} dup {lg['duplicates']} server CPU {run['server_cpu_s']:.2f} s "
        f"loadgen {run['loadgen_cpu_share']:.0%}{flag}",
        flush=True,
    )


def report_only(path: Path, out: Path) -> int:
    data = json.loads(path.read_text())
    cases = [
        Case(
            c["workload"],
            c["target"],
            c["server"],
            c["transport"],
            c["n"],
            c["runs"],
            c["skipped"],
            c["errors"],
        )
        for c in data["cases"]
    ]
    header = data.get("header") or f"Command: `{data['command']}`"
    table = markdown(cases, header)
    (out / "results.md").write_text(table)
    failure = chart(cases, out / "benchmarks.png")
    lab_failure = write_lab(cases, data, out)
    failure = failure or lab_failure
    print(table)
    return 0 if failure is None else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report_only(args.report_only, args.out)
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    # Only the fanout, echo and connect workloads run the Node peers.
    if not args.no_npm and {"fanout", "echo", "connect"} & set(args.workloads):
        failure = install_node_peers()
        if failure:
            print(f"Node peers unavailable: {failure}", flush=True)
    try:
        binary = build_loadgen(args.out / "build")
    except BenchError as exc:
        print(f"cannot build the load generator: {exc}", file=sys.stderr)
        return 2
    found = versions()
    pins = cores()
    machine = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "pinning": f"server on core {pins[0]}, load generator on core(s) {pins[1]}"
        if pins
        else "no pinning (fewer than 2 cores or no taskset)",
    }
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
    print(f"machine: {machine}", flush=True)
    cases: list[Case] = []
    started = time.monotonic()
    log_dir = args.out / "logs"
    redis = RedisWorkload(log_dir)
    redis_cases: list[tuple[Case, RedisTarget]] = []
    plain_cases: list[tuple[Case, Target]] = []
    try:
        for case, target in plan(args):
            cases.append(case)
            plain = target.target if isinstance(target, RedisTarget) else target
            if plain.server == "pushwire":
                plain.env["PYTHONPATH"] = str(args.pushwire_src.resolve())
            if isinstance(target, RedisTarget):
                redis_cases.append((case, target))
            else:
                plain_cases.append((case, target))
        run_interleaved(plain_cases, args, binary, log_dir)
        redis.run_cases(redis_cases, args, binary)
    finally:
        redis.close()
    elapsed = time.monotonic() - started
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    header = "\n".join(
        [
            f"Command: `{command}`  ",
            f"Runs per figure: {args.runs} (fresh server process each), "
            f"{args.duration:g} s measured per run, fan-out window {args.window} messages, "
            f"{args.loadgen_procs} load generator process(es) for fan-out; "
            "figures are medians, (min-max) over the runs.  ",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in found.items()) + "  ",
            f"Machine: {machine['cpu']}, {machine['cores']} cores, "
            f"Linux {machine['kernel']}; {machine['pinning']}"
            + (" (the redis workload pins nothing)" if "redis" in args.workloads else "")
            + ".  ",
            f"Total time: {elapsed / 60:.1f} min.",
        ]
    )
    table = markdown(cases, header)
    (args.out / "results.md").write_text(table)
    # What the run was: in results.json, and in lab.json for the transport lab's page.
    about = {
        "command": command,
        "date": date,
        "versions": found,
        "machine": machine,
        "runs_per_figure": args.runs,
        "duration_s": args.duration,
    }
    (args.out / "results.json").write_text(
        json.dumps(
            {
                **about,
                "window": args.window,
                "elapsed_s": elapsed,
                "header": header,
                "cases": [c.as_dict() for c in cases],
            },
            indent=1,
        )
    )
    failure = chart(cases, args.out / "benchmarks.png")
    lab_failure = write_lab(
        cases,
        about,
        args.out,
    )
    failure = failure or lab_failure
    print(table)
    print(
        f"written: {args.out / 'results.md'}, {args.out / 'results.json'}"
        + (f"; no chart: {failure}" if failure else f", {args.out / 'benchmarks.png'}")
    )
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
