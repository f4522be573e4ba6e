"""Turn cases into a markdown table of their figures, ratios to the peers, and a chart."""

from __future__ import annotations

from pathlib import Path

from .cases import Case, figures, server_share
from .redis_fanout import ratio_lines as redis_ratio_lines
from .scaling import scaling_lines


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(case: Case, metric: str, spread: bool = True) -> str:
    if metric == "spread":  # the redis workload: connections held by each server process
        counts: list[int] = next(
            (c for r in case.runs if (c := r.get("connections_per_process"))), []
        )
        return "/".join(str(n) for n in counts) or "-"
    fig = figures(case).get(metric)
    if fig is None:
        return "-"
    if not spread or len(case.runs) < 2:
        return _fmt(fig["median"])
    return f"{_fmt(fig['median'])} ({_fmt(fig['min'])}-{_fmt(fig['max'])})"


def _status(case: Case) -> str:
    if case.skipped:
        return f"skipped: {case.skipped}"
    if case.invalid:
        return "INVALID: " + "; ".join(case.invalid)
    if case.loadgen_limited:
        shares = sorted(run["loadgen_cpu_share"] for run in case.runs)
        server = sorted(server_share(run) for run in case.runs)
        return (
            f"load generator-limited (it had {shares[len(shares) // 2]:.0%} of its core, the "
            f"server {server[len(server) // 2]:.0%}): the rate is the load generator's limit; "
            "compare per server CPU-s"
        )
    # Fan-out and echo keep the server saturated: a server that got much less than its core
    # was starved by something else on the machine, and its figure is low for that reason.
    if case.workload in ("fanout", "echo", "lab-fanout", "lab-echo") and case.runs:
        shares = sorted(server_share(run) for run in case.runs)
        median = shares[len(shares) // 2]
        if median < 0.6:
            return f"ok, but the server had {median:.0%} of its core (machine busy?)"
    return "ok"


TABLES: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
    "fanout": (
        "deliveries/s",
        [
            ("rate", "deliveries/s (min-max)", True),
            ("p50_ms", "p50 ms", False),
            ("p99_ms", "p99 ms", False),
            ("p999_ms", "p99.9 ms", False),
            ("lost", "lost+dup", False),
            ("requests_per_msg", "HTTP requests/msg", False),
            ("per_cpu", "deliveries per server CPU-s", False),
            ("server_cpu_s", "server CPU s", False),
            ("server_share", "server CPU share", False),
            ("server_rss_mib", "server RSS MiB", False),
            ("loadgen_cpu", "loadgen CPU", False),
        ],
    ),
    "echo": (
        "round trips/s",
        [
            ("rate", "round trips/s (min-max)", True),
            ("p50_ms", "p50 ms", False),
            ("p99_ms", "p99 ms", False),
            ("p999_ms", "p99.9 ms", False),
            ("lost", "lost+dup", False),
            ("per_cpu", "round trips per server CPU-s", False),
            ("server_cpu_s", "server CPU s", False),
            ("server_share", "server CPU share", False),
            ("loadgen_cpu", "loadgen CPU", False),
        ],
    ),
    "connect": (
        "handshakes/s",
        [
            ("rate", "handshakes/s (min-max)", True),
            ("rss_per_conn_kib", "RSS per idle connection KiB (min-max)", True),
            ("server_cpu_s", "server CPU s", False),
            ("loadgen_cpu", "loadgen CPU", False),
        ],
    ),
    "lab-fanout": (
        "messages/s",
        [
            ("rate", "messages/s (min-max)", True),
            ("p50_ms", "p50 ms", False),
            ("p99_ms", "p99 ms", False),
            ("requests_per_msg", "HTTP requests/msg", False),
            ("bytes_per_msg", "bytes on the wire/msg", False),
            ("cpu_ms_per_1000", "server CPU ms/1000 msgs", False),
            ("lost", "lost+dup", False),
            ("loadgen_cpu", "loadgen CPU", False),
        ],
    ),
    "redis": (
        "deliveries/s",
        [
            ("rate", "deliveries/s (min-max)", True),
            ("p50_ms", "p50 ms", False),
            ("p99_ms", "p99 ms", False),
            ("lost", "lost+dup", False),
            ("server_cpu_s", "CPU s, all server processes + redis", False),
            ("redis_cpu_s", "of which redis-server", False),
            ("cpu_ms_per_1000", "CPU ms/1000 deliveries", False),
            ("server_rss_mib", "RSS MiB, all", False),
            ("loadgen_cpu", "loadgen CPU", False),
            ("spread", "connections per process", False),
        ],
    ),
    "lab-echo": (
        "round trips/s",
        [
            ("rate", "round trips/s (min-max)", True),
            ("p50_ms", "p50 ms", False),
            ("p99_ms", "p99 ms", False),
            ("bytes_per_msg", "bytes on the wire/msg", False),
            ("cpu_ms_per_1000", "server CPU ms/1000 msgs", False),
            ("lost", "lost+dup", False),
        ],
    ),
}

TITLES = {
    "fanout": "Fan-out: 1 publisher, N subscribers, 64-byte text",
    "echo": "Echo: closed loop, 64-byte text",
    "connect": "Connect: WebSocket handshakes, 100 in flight, connections kept open",
    "lab-fanout": "Transport lab (pushwire only): fan-out",
    "lab-echo": "Transport lab (pushwire only): echo",
    "redis": "Fan-out through Redis: 1 publisher, N subscribers, 64-byte text",
}


# A line under a table's title, where a workload is measured differently from the others.
NOTES = {
    "redis": "Nothing is pinned in this workload: the server's processes, redis-server and the "
    "load generator share the machine's cores. CPU and RSS are summed over all of the "
    "server's processes and redis-server (when the server uses it).",
}


def markdown(cases: list[Case], header: str) -> str:
    lines = [header, ""]
    for workload, (_, columns) in TABLES.items():
        group = [c for c in cases if c.workload == workload]
        if not group:
            continue
        for n in sorted({c.n for c in group}):
            rows = [c for c in group if c.n == n]
            lines += [f"### {TITLES[workload]} (N = {n:,})", ""]
            if workload in NOTES:
                lines += [NOTES[workload], ""]
            lines.append(
                "| server | transport | " + " | ".join(c[1] for c in columns) + " | status |"
            )
            lines.append("|---|---|" + "---|" * len(columns) + "---|")
            for case in rows:
                cells = [_cell(case, metric, spread) for metric, _, spread in columns]
                lines.append(
                    f"| {case.target} | {case.transport} | "
                    + " | ".join(cells)
                    + f" | {_status(case)} |"
                )
            lines.append("")
    ratio_lines = ratios(cases)
    if ratio_lines:
        lines += [
            "### pushwire as a ratio to each peer (same run; > 1 means pushwire is ahead)",
            "",
        ]
        lines += ratio_lines
    lines += redis_ratio_lines(cases)
    lines += scaling_lines(cases)
    return "\n".join(lines) + "\n"


def _median(case: Case | None, metric: str) -> float | None:
    if case is None or case.skipped or not case.runs:
        return None
    fig = figures(case).get(metric)
    return fig["median"] if fig else None


def _find(cases: list[Case], workload: str, target: str, n: int | None = None) -> Case | None:
    for case in cases:
        if case.workload == workload and case.target == target and (n is None or case.n == n):
            return case
    return None


# (pushwire target, the peers it is compared with)
COMPARISONS = {
    "websocket": (
        "pushwire",
        [
            "thin-Python ceiling",
            "websockets",
            "aiohttp",
            "Starlette (uvicorn)",
            "python-socketio (uvicorn)",
            "Node ws",
            "Node socket.io",
        ],
    ),
    "sse": (
        "pushwire SSE (/sse/<channel>)",
        ["aiohttp SSE (StreamResponse)", "sse-starlette (uvicorn)"],
    ),
    "longpoll": ("pushwire longpoll", ["python-socketio polling", "Node socket.io polling"]),
    # The native server against pushwire's own ASGI door on uvicorn (> 1: native ahead).
    "asgi": ("pushwire", ["pushwire ASGI (uvicorn)"]),
    "asgi-sse": ("pushwire SSE (/sse/<channel>)", ["pushwire ASGI SSE (uvicorn)"]),
}


#: Marks a rate ratio taken per server CPU-second: the load generator limited one side's rate.
PER_CPU_MARK = "†"


def ratios(cases: list[Case]) -> list[str]:
    """pushwire's median over each peer's median, per workload and size.

    A rate column compares deliveries (round trips) per second, unless the load generator
    was the limit of either side: then it compares deliveries per server CPU-second, marked
    with PER_CPU_MARK. The per-CPU columns compare that figure always.
    """
    columns: list[
        tuple[str, str, int | None, str, bool]
    ] = []  # title, workload, n, metric, lower_is_better
    for size in sorted({c.n for c in cases if c.workload == "fanout"}):
        columns.append((f"fan-out N={size:,} deliveries/s", "fanout", size, "rate", False))
    for size in sorted({c.n for c in cases if c.workload == "fanout"}):
        columns.append((f"fan-out N={size:,} per server CPU-s", "fanout", size, "per_cpu", False))
    if any(c.workload == "echo" for c in cases):
        columns.append(("echo round trips/s", "echo", None, "rate", False))
    if any(c.workload == "connect" for c in cases):
        columns.append(("connect handshakes/s", "connect", None, "rate", False))
        columns.append(
            ("RSS per idle connection (peer ÷ pushwire)", "connect", None, "rss_per_conn_kib", True)
        )
    if not columns:
        return []
    lines = [
        "| pushwire form | peer | " + " | ".join(c[0] for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for own, peers in COMPARISONS.values():
        for peer in peers:
            cells = []
            for _, workload, n, metric, lower in columns:
                own_case = _find(cases, workload, own, n)
                peer_case = _find(cases, workload, peer, n)
                mark = ""
                if (
                    metric == "rate"
                    and workload != "connect"
                    and own_case is not None
                    and peer_case is not None
                    and (own_case.loadgen_limited or peer_case.loadgen_limited)
                ):
                    metric, mark = "per_cpu", PER_CPU_MARK
                mine = _median(own_case, metric)
                theirs = _median(peer_case, metric)
                if mine is None or theirs is None or not mine or not theirs:
                    cells.append("-")
                else:
                    cells.append(f"{(theirs / mine if lower else mine / theirs):.2f}x{mark}")
            if any(cell != "-" for cell in cells):
                lines.append(f"| {own} | {peer} | " + " | ".join(cells) + " |")
    lines.append("")
    if any(PER_CPU_MARK in line for line in lines[2:]):
        lines += [
            f"{PER_CPU_MARK} The load generator was the limit of one side's rate: this ratio is "
            "of deliveries (round trips) per server CPU-second instead.",
            "",
        ]
    return lines


def chart(cases: list[Case], path: Path) -> str | None:
    """A PNG of the main figures (median bars, min-max whiskers); the reason it failed, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]')"
    panels: list[tuple[str, list[Case], str, str]] = []
    for n in sorted({c.n for c in cases if c.workload == "fanout"}):
        group = [c for c in cases if c.workload == "fanout" and c.n == n]
        panels.append((f"fan-out, N = {n:,}", group, "rate", "deliveries/s"))
    for workload, metric, unit in [
        ("echo", "rate", "round trips/s"),
        ("connect", "rate", "handshakes/s"),
        ("connect", "rss_per_conn_kib", "KiB per idle connection"),
        ("lab-fanout", "rate", "messages/s"),
        ("lab-fanout", "bytes_per_msg", "bytes on the wire / message"),
        ("lab-fanout", "requests_per_msg", "HTTP requests / message"),
        ("redis", "rate", "deliveries/s"),
    ]:
        group = [c for c in cases if c.workload == workload]
        if group:
            n = max(c.n for c in group)
            title = TITLES[workload].split(":")[0] + (
                f", N = {n:,}" if workload == "lab-fanout" else ""
            )
            panels.append((title, [c for c in group if c.n == n], metric, unit))
    if not panels:
        return "nothing to draw"
    columns = 2
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, columns, figsize=(14, 4.2 * rows), squeeze=False)
    for ax, (title, group, metric, unit) in zip(axes.flat, panels, strict=False):
        names, medians, low, high, colours = [], [], [], [], []
        for case in group:
            fig_value = figures(case).get(metric)
            if case.skipped or fig_value is None:
                continue
            names.append(case.target + (" (!)" if case.invalid else ""))
            medians.append(fig_value["median"])
            low.append(fig_value["median"] - fig_value["min"])
            high.append(fig_value["max"] - fig_value["median"])
            colours.append("#d9534f" if case.server == "pushwire" else "#5b8bd0")
        ax.barh(names, medians, xerr=[low, high], color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(unit)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("pushwire (red) and its peers (blue): median of the runs, whiskers min-max")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
