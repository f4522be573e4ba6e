"""`python -m bench`: run the workloads on pushwire and its peers, write table, JSON and chart."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from .cases import Case
from .chaos import run_chaos
from .harness import BenchError, build_loadgen, cores, run_loadgen, running
from .hold import run_hold
from .lab_json import write_lab
from .options import Options, parse_args
from .records import About, Machine, Results, Run
from .redis_fanout import BASELINE, RedisTarget, RedisWorkload, redis_targets
from .report import chart, markdown
from .servers import REPO, Target, install_node_peers, lab_targets, targets, versions
from .soak import run_soak


def plan(args: Options) -> list[tuple[Case, Target | RedisTarget]]:
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
        if workload in ("chaos", "soak", "hold"):  # bench/chaos.py, soak.py, hold.py: apart
            continue
        if workload == "redis":  # bench/redis_fanout.py
            for n in args.redis_subscribers:
                for entry in redis_targets(args.redis_workers, args.baseline_src):
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
                    if args.baseline_src is not None and target.server == "pushwire":
                        # The same target from the baseline tree, run by run alongside.
                        old = dataclasses.replace(
                            target,
                            name=f"{target.name} ({BASELINE})",
                            env={"PYTHONPATH": str(args.baseline_src.resolve())},
                        )
                        out.append((Case(workload, old.name, old.server, old.transport, n), old))
    return out


def run_case(
    case: Case, target: Target, args: Options, binary: Path, log_dir: Path, index: int
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
    planned: list[tuple[Case, Target]], args: Options, binary: Path, log_dir: Path
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


def _progress(case: Case, index: int, run: Run | None) -> None:
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
    data: Results = json.loads(path.read_text())
    cases = [Case.from_record(c) for c in data["cases"]]
    header = data.get("header") or f"Command: `{data['command']}`"
    table = markdown(cases, header)
    (out / "results.md").write_text(table)
    failure = chart(cases, out / "benchmarks.png")
    lab_failure = write_lab(cases, data, out)
    failure = failure or lab_failure
    print(table)
    return 0 if failure is None else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report_only(args.report_only, args.out)
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.workloads == ["chaos"]:  # no load generator, no peers: tests/chaos/ only
        return run_chaos(args, command)
    if args.workloads == ["soak"]:  # pushwire alone, tests/soak/
        return run_soak(args, command)
    if args.workloads == ["hold"]:  # pushwire alone, bench/hold.py
        return run_hold(args, command)
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
    machine: Machine = {
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
                # A baseline target brings its own source tree.
                plain.env.setdefault("PYTHONPATH", str(args.pushwire_src.resolve()))
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
    about: About = {
        "command": command,
        "date": date,
        "versions": found,
        "machine": machine,
        "runs_per_figure": args.runs,
        "duration_s": args.duration,
    }
    results: Results = {
        **about,
        "window": args.window,
        "elapsed_s": elapsed,
        "header": header,
        "cases": [c.as_dict() for c in cases],
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
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
    status = run_chaos(args, command) if "chaos" in args.workloads else 0
    if "soak" in args.workloads:
        status = run_soak(args, command) or status
    if "hold" in args.workloads:
        status = run_hold(args, command) or status
    return status


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
