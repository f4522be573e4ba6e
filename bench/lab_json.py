"""The transport lab's figures as a compact `lab.json`, and its chart as a PNG.

`lab.json` is what the demo server's `/lab` page draws (src/pushwire/static/lab.json holds one
measured result): per transport, the medians of the lab's fan-out and echo runs, with the
command, date, versions and machine that produced them.

    python -m bench --workloads lab ...           # writes lab.json and lab.png into --out
    python -m bench.lab_json LAB_JSON PNG         # redraw the PNG from a lab.json
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import TypedDict

from .cases import Case, figures
from .records import About, Machine
from .report import _status

FORMAT = "pushwire-lab/1"
#: How the harness words a run whose load generator may have been the bottleneck.
LOADGEN_LIMIT = "load generator at"
#: lab.json key <- the report's metric name, for each load.
FANOUT_FIGURES = {
    "messages_per_s": "rate",
    "p50_ms": "p50_ms",
    "p99_ms": "p99_ms",
    "requests_per_msg": "requests_per_msg",
    "bytes_per_msg": "bytes_per_msg",
    "cpu_ms_per_1000": "cpu_ms_per_1000",
}
ECHO_FIGURES = {
    "round_trips_per_s": "rate",
    "p50_ms": "p50_ms",
    "p99_ms": "p99_ms",
    "bytes_per_msg": "bytes_per_msg",
    "cpu_ms_per_1000": "cpu_ms_per_1000",
}
#: The versions that matter to the lab (it runs pushwire only).
LAB_VERSIONS = ("pushwire", "websockets", "httptools", "uvloop", "python", "gcc")
#: What the PNG and the page draw: (lab.json key, title, unit).
CHARTS = [
    ("messages_per_s", "Messages delivered per second", "messages/s"),
    ("p50_ms", "Latency, publish to receive (median)", "ms"),
    ("requests_per_msg", "HTTP requests per delivered message", "requests"),
    ("bytes_per_msg", "Bytes on the wire per delivered message (64-byte payload)", "bytes"),
    ("p99_ms", "Latency, publish to receive (99th percentile)", "ms"),
    ("cpu_ms_per_1000", "Server CPU per 1,000 delivered messages", "ms"),
]


class LabTransport(TypedDict):
    """One transport's row: its lab-fanout case and, where it has one, its lab-echo case."""

    name: str
    transport: str
    #: Every run delivered correctly (a load generator at its limit does not make it invalid).
    valid: bool
    #: The load generator was the limit of a run: the rate is a lower bound.
    loadgen_bound: bool
    status: str
    fanout: dict[str, float] | None  # FANOUT_FIGURES' keys, None when it did not run
    echo: dict[str, float] | None  # ECHO_FIGURES' keys


class LabSummary(TypedDict):
    """lab.json."""

    format: str
    date: str
    command: str
    versions: dict[str, str]
    machine: Machine
    runs_per_figure: int | None
    duration_s: float | None
    fanout_subscribers: int
    echo_connections: int | None
    payload_bytes: int
    transports: list[LabTransport]


def _round(value: float) -> float:
    """Three significant digits: the runs do not agree better than that."""
    return float(f"{value:.3g}")


def _medians(case: Case | None, keys: dict[str, str]) -> dict[str, float] | None:
    if case is None or case.skipped or not case.runs:
        return None
    found = figures(case)
    return {key: _round(found[metric]["median"]) for key, metric in keys.items() if metric in found}


def lab_summary(cases: list[Case], meta: About) -> LabSummary | None:
    """The lab cases' medians per transport, in the lab's order; None without lab cases."""
    fanout = [c for c in cases if c.workload == "lab-fanout"]
    if not fanout:
        return None
    n = min(c.n for c in fanout)
    echo = {c.target: c for c in cases if c.workload == "lab-echo"}
    transports: list[LabTransport] = []
    for case in (c for c in fanout if c.n == n):
        echo_case = echo.get(case.target)
        reasons = case.invalid + (echo_case.invalid if echo_case else [])
        # A load generator near 100% of its core makes a rate a lower bound, not a wrong one.
        wrong = [r for r in reasons if not r.startswith(LOADGEN_LIMIT)]
        transports.append(
            {
                "name": case.target,
                "transport": case.transport,
                "valid": not wrong and not case.skipped and bool(case.runs),
                "loadgen_bound": len(wrong) < len(reasons),
                "status": _status(case),
                "fanout": _medians(case, FANOUT_FIGURES),
                "echo": _medians(echo_case, ECHO_FIGURES),
            }
        )
    return {
        "format": FORMAT,
        "date": meta.get("date")
        or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": meta.get("command", ""),
        "versions": {k: v for k, v in meta.get("versions", {}).items() if k in LAB_VERSIONS},
        "machine": meta.get("machine", {}),
        "runs_per_figure": meta.get("runs_per_figure"),
        "duration_s": meta.get("duration_s"),
        "fanout_subscribers": n,
        "echo_connections": max((c.n for c in echo.values()), default=None),
        "payload_bytes": 64,
        "transports": transports,
    }


def write_lab(cases: list[Case], meta: About, out: Path) -> str | None:
    """Write lab.json and lab.png into `out` when there are lab cases; the chart's failure."""
    summary = lab_summary(cases, meta)
    if summary is None:
        return None
    (out / "lab.json").write_text(json.dumps(summary, indent=1) + "\n")
    return lab_chart(summary, out / "lab.png")


def lab_chart(summary: LabSummary, path: Path) -> str | None:
    """One horizontal bar chart per lab figure, one bar per transport; the failure, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]')"
    from matplotlib.ticker import FuncFormatter

    rows = summary["transports"]
    names = [row["name"] for row in rows]
    columns = 2
    lines = (len(CHARTS) + columns - 1) // columns
    fig, axes = plt.subplots(
        lines, columns, figsize=(14, 1.2 + lines * (0.9 + 0.3 * len(rows))), squeeze=False
    )
    for ax, (key, title, unit) in zip(axes.flat, CHARTS, strict=False):
        values = [(row["fanout"] or {}).get(key, 0.0) for row in rows]
        colours = [_colour(row) for row in rows]
        bars = ax.barh(names, values, color=colours)
        # A rate measured while the load generator was at its limit is a lower bound.
        bound = ["≥ " if key == "messages_per_s" and row["loadgen_bound"] else "" for row in rows]
        labels = [b + _label(v) for b, v in zip(bound, values, strict=True)]
        ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(axis="both", labelsize=8)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _label(x)))
        ax.margins(x=0.18)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(CHARTS) :]:
        ax.axis("off")
    fig.suptitle(
        f"pushwire transport lab: fan-out to {summary['fanout_subscribers']:,} subscribers, "
        f"{summary['payload_bytes']}-byte messages ({summary['date'][:10]}); "
        "orange: an HTTP request per batch of messages; ≥: the load generator was the limit",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _colour(row: LabTransport) -> str:
    if not row["valid"]:
        return "#9aa0b2"
    return "#d97706" if row["transport"] in ("longpoll", "polling") else "#4f46e5"


def _label(value: float) -> str:
    if value >= 10_000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.lab_json LAB_JSON PNG", file=sys.stderr)
        return 2
    failure = lab_chart(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    if failure:
        print(failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
