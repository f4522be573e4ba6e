"""`python -m bench --workloads soak`: the soak of issue 15 (tests/soak/).

One `pushwire serve` process with its default settings holds `--soak-connections`
well-behaved subscribers on mixed transports (raw WebSocket and SSE, and the Python client
on WebSocket, SSE, streaming, long-poll and polling) for `--soak-minutes` under steady
publishing, while an abusive slice from 127.0.0.2 (slow readers, half-open requests, a
reconnect storm, oversize frames) does its worst. It reports the RSS slope per hour after
the warm-up, RSS after the soak against after the warm-up, descriptors at start and end,
the well-behaved subscribers' lost messages (must be 0), and the server's CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from tests.soak.scenario import SoakPlan, SoakReport, soak

from .options import Options

__all__ = ["run_soak"]


def plan(args: Options) -> SoakPlan:
    return SoakPlan(connections=args.soak_connections, seconds=args.soak_minutes * 60)


def table(report: SoakReport) -> str:
    s = report.summary()
    rows = [
        ("well-behaved subscribers", f"{report.subscribers:,}"),
        ("messages published / deliveries received", f"{report.published:,} / {report.received:,}"),
        (
            "lost (well-behaved) / duplicated / gaps",
            f"{report.lost} / {report.duplicates} / {report.gaps}",
        ),
        ("closed by the server (well-behaved)", str(len(report.closed_by_server))),
        (
            "RSS: fleet connected / after warm-up / after the soak",
            f"{s['rss_start_mb']} / {s['rss_warm_mb']} / {s['rss_end_mb']} MB "
            f"(end/warm {s['rss_end_vs_warm']})",
        ),
        ("RSS peak", f"{s['rss_peak_mb']} MB"),
        ("RSS slope after warm-up", f"{s['rss_slope_mb_per_hour']} MB/hour"),
        ("open descriptors: start / end", f"{report.fds_start:,} / {report.fds_end:,}"),
        ("server CPU", f"{s['cpu_seconds']} s ({s['cpu_share']:.0%} of one core)"),
        ("slow consumers closed (4001), the server's count", str(s["server_slow_consumer_closes"])),
        ("connecting the fleet", f"{s['connect_seconds']} s"),
    ]
    rows += [(f"abuse: {k}", f"{v:,}") for k, v in sorted(report.abuse.answers.items())]
    out = ["| soak | |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out) + "\n"


def run_soak(args: Options, command: str) -> int:
    """Run the soak, write soak.md and soak.json under `args.out`; 1 when a well-behaved
    subscriber lost a message, or the server held more descriptors or memory at the end."""
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(args.pushwire_src.resolve()), os.environ.get("PYTHONPATH")])
    )
    soak_plan = plan(args)
    print(
        f"soak: {soak_plan.connections:,} subscribers for {soak_plan.seconds / 60:g} min",
        flush=True,
    )
    started = time.monotonic()
    report = asyncio.run(soak(soak_plan))
    elapsed = time.monotonic() - started
    text = f"Command: `{command}`  \nTotal time: {elapsed / 60:.1f} min.\n\n" + table(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(text)
    record = {
        "command": command,
        "elapsed_s": elapsed,
        "summary": report.summary(),
        "closed_by_server": report.closed_by_server[:50],
        "samples": [[s.at, s.rss, s.fds, s.cpu] for s in report.samples],
    }
    (args.out / "soak.json").write_text(json.dumps(record, indent=1))
    print(text)
    print(f"written: {args.out / 'soak.md'}, {args.out / 'soak.json'}")
    ok = (
        report.lost == 0
        and report.duplicates == 0
        and not report.closed_by_server
        and report.fds_end <= report.fds_start
        and report.rss_warm > 0
        and report.rss_end <= report.rss_warm * 1.1
    )
    return 0 if ok else 1
