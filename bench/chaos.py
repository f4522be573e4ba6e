"""`python -m bench --workloads chaos`: the chaos suite's long runs (tests/chaos/).

One run per fault (resets, torn answers, stalls, black holes, a node out of the rotation, a
node SIGKILLed and restarted, Redis restarted with and without persistence, WebSocket
refused), each publishing its share of `--chaos-messages` at `--chaos-rate` while one fault
happens every few seconds, with a subscriber on each of the Python client's transports
through the fault proxy, over two nodes and Redis. Every subscriber is checked by the
ledger (tests/chaos/ledger.py); the table counts, per transport and fault, what was sent,
received, lost inside a reported gap, lost silently and duplicated, and the recovery time
after each fault. The long run of docs/delivery.md is `--chaos-messages 1010000` (1,009,944
messages: each fault's share is split over eight publishers).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from tests.chaos.ledger import Counts
from tests.chaos.scenario import Plan, Report, load_range, percentile, run

from .options import Options

__all__ = ["CHAOS_FAULTS", "run_chaos"]

#: The faults, each with the seconds between two of its occurrences (a node restart and
#: what follows it need longer than a reset).
CHAOS_FAULTS: Final = {
    "reset": 2.0,
    "truncate": 2.0,
    "stall": 3.0,
    "blackhole": 3.0,
    "node_down": 3.0,
    "kill": 5.0,
    "redis_volatile": 4.0,
    "redis_persistent": 4.0,
    "switch": 4.0,
}
SWITCHING: Final = (("websocket", "sse"), ("websocket", "stream"), ("websocket", "longpoll"))


def plans(args: Options) -> list[Plan]:
    """One plan per fault asked for (all by default), in the order asked; a fault's seed
    and share do not depend on which others run."""
    share = max(100, args.chaos_messages // len(CHAOS_FAULTS))
    unknown = set(args.chaos_faults) - set(CHAOS_FAULTS)
    if unknown:
        raise ValueError(f"unknown chaos fault(s): {', '.join(sorted(unknown))}")
    by_fault = {}
    for index, (fault, every) in enumerate(CHAOS_FAULTS.items()):
        by_fault[fault] = Plan(
            fault,
            (fault,),
            seed=args.chaos_seed + index,
            length=share / args.chaos_rate + every,
            every=every,
            rate=args.chaos_rate,
            python=SWITCHING if fault == "switch" else Plan.python,
            messages=share,
            direct=True,
            settle=60.0,
            publishers=4,
            remote=True,
        )
    return [by_fault[fault] for fault in args.chaos_faults or CHAOS_FAULTS]


def table(reports: list[Report]) -> str:
    lines = _counts_table(reports, direct=False)
    if any(report.direct for report in reports):
        lines += ["", "Direct messages (each subscriber's user inbox):", ""]
        lines += _counts_table(reports, direct=True)
    lines += [
        "",
        "| fault | faults | recovery p50 | recovery p99 | published | run time "
        "| publisher rate | load average |",
    ]
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for report in reports:
        times = report.recovery
        p50 = f"{percentile(times, 50):.2f} s" if times else "-"
        p99 = f"{percentile(times, 99):.2f} s" if times else "-"
        faults = sum(1 for event in report.schedule if event.at < report.elapsed)
        lines.append(
            f"| {report.plan.label} | {faults} | {p50} | {p99} | {report.published:,} "
            f"| {report.elapsed:.0f} s | {report.rate:.0f}/s of {report.plan.rate:g}/s "
            f"| {load_range(report.load)} |"
        )
    return "\n".join(lines) + "\n"


def _counts_table(reports: list[Report], *, direct: bool) -> list[str]:
    lines = [
        "| fault | transport | sent | received | lost in a reported gap "
        "| lost after a reported failure | lost silently | duplicated | gaps (empty) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = Counts()
    for report in reports:
        for label, c in (report.direct if direct else report.channel).items():
            total.add(c)
            lines.append(
                f"| {report.plan.label} | {label} | {c.sent:,} | {c.received:,} "
                f"| {c.lost_in_gap:,} | {c.lost_reported:,} | {c.lost_silently:,} "
                f"| {c.duplicated:,} | {c.gaps} ({c.empty_gaps}) |"
            )
    lines.append(
        f"| **all** | | {total.sent:,} | {total.received:,} | {total.lost_in_gap:,} "
        f"| {total.lost_reported:,} | {total.lost_silently:,} | {total.duplicated:,} "
        f"| {total.gaps} ({total.empty_gaps}) |"
    )
    return lines


def _counts(counts: dict[str, Counts]) -> dict[str, Any]:
    return {
        label: {
            "sent": c.sent,
            "received": c.received,
            "lost_in_gap": c.lost_in_gap,
            "lost_silently": c.lost_silently,
            "lost_reported": c.lost_reported,
            "duplicated": c.duplicated,
            "gaps": c.gaps,
            "empty_gaps": c.empty_gaps,
            "violations": c.violations[:20],
        }
        for label, c in counts.items()
    }


def _record(report: Report) -> dict[str, Any]:
    return {
        "fault": report.plan.label,
        "seed": report.plan.seed,
        "schedule": [str(event) for event in report.schedule],
        "elapsed_s": report.elapsed,
        "published": report.published,
        "recovery_s": report.recovery,
        "proxy": report.proxy,
        "publishing_s": report.publishing,
        "attempted": report.attempted,
        "rate": report.rate,
        "load": report.load,
        "channel": _counts(report.channel),
        "direct": _counts(report.direct),
    }


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, Report]], Report]:
    """uvloop when installed (the harness's proxies, publishers and subscribers share one
    event loop: asyncio's own spent most of the run's CPU time in its transports)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        return asyncio.run
    return uvloop.run


def run_chaos(args: Options, command: str) -> int:
    """Run every fault's plan, write chaos.md and chaos.json under `args.out`; 1 when a
    subscriber lost a message silently or got one twice."""
    # The nodes are `pushwire serve` children: they run the source tree asked for.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(args.pushwire_src.resolve()), os.environ.get("PYTHONPATH")])
    )
    started = time.monotonic()
    reports: list[Report] = []
    args.out.mkdir(parents=True, exist_ok=True)
    text = ""
    for plan in plans(args):
        print(f"chaos {plan.label}: {plan.messages:,} messages at {plan.rate:g}/s", flush=True)
        with tempfile.TemporaryDirectory(prefix="pushwire-chaos-") as directory:
            report = _event_loop_runner()(run(plan, Path(directory)))
        reports.append(report)
        print(report.summary(), flush=True)
        for violation in (report.violations() + report.violations(direct=True))[:10]:
            print(f"  VIOLATION {violation}", flush=True)
        # Written after each fault: a long run stopped early keeps what it measured.
        elapsed = time.monotonic() - started
        header = (
            f"Command: `{command}`  \nTotal time: {elapsed / 60:.1f} min; seeds "
            + ", ".join(f"{r.plan.label} {r.plan.seed}" for r in reports)
            + ".\n\n"
        )
        text = header + table(reports)
        (args.out / "chaos.md").write_text(text)
        results = {"command": command, "elapsed_s": elapsed, "runs": [_record(r) for r in reports]}
        (args.out / "chaos.json").write_text(json.dumps(results, indent=1))
    print(text)
    print(f"written: {args.out / 'chaos.md'}, {args.out / 'chaos.json'}")
    return 0 if all(not r.violations() and not r.violations(direct=True) for r in reports) else 1
