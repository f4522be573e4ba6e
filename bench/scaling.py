"""The redis workload with 1, 2, 4 … workers: CPU per delivery per worker (issue 18 item 6).

On a machine whose cores the workers share with redis-server and the load generator, more
workers cannot raise deliveries/s; what shows whether they scale is what each delivery
costs. A run records each server process's CPU-seconds over the measured phase (from
`/proc/PID/stat`) and the subscribers it held, so that the table gives, per worker count:

- CPU ms per 1,000 deliveries over everything (every server process and redis-server), and
  redis-server's part of it;
- per worker, its CPU ms per 1,000 of *its own* deliveries: its CPU divided by the
  deliveries times its share of the connections (the publisher's one connection counted
  as a subscriber's; at N = 1,000 that is 0.1 %).

Workers scale when these stay flat as the count grows: each delivery costs a worker the same
wherever the others run, and the total per delivery grows only by what the hop through Redis
costs each added worker (one pub/sub message and one parse per published message).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .cases import Case
from .records import Run

__all__ = ["connections_by_process", "per_worker_ms", "process_tree", "scaling_lines"]


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it (a server's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections on 127.0.0.1:`port` held by each of `pids` (0: none)."""
    wanted = f"0100007F:{port:04X}"
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    counts: dict[int, int] = {}
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held += 1
        counts[pid] = held
    return counts


def per_worker_ms(run: Run) -> list[float]:
    """Each connection-holding process's CPU ms per 1,000 of its own deliveries."""
    workers = [w for w in run.get("worker_cpu", []) if w[1] > 0]
    deliveries = run["loadgen"]["deliveries"]
    held = sum(connections for _, connections in workers)
    if not deliveries or not held:
        return []
    return [cpu * 1e6 / (deliveries * connections / held) for cpu, connections in workers]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _row(case: Case) -> str:
    runs = [run for run in case.runs if run["loadgen"]["deliveries"] and not run["invalid"]]
    if not runs:
        return f"| {case.target} | - | - | - | - | - | {len(case.runs)} runs, none valid |"

    def each(value: float) -> str:
        return f"{value:.3f}"

    rates = [r["loadgen"]["deliveries"] / r["loadgen"]["measured_s"] for r in runs]
    total = [r["server_cpu_s"] * 1e6 / r["loadgen"]["deliveries"] for r in runs]
    redis = [r.get("redis_cpu_s", 0.0) * 1e6 / r["loadgen"]["deliveries"] for r in runs]
    server = [t - r for t, r in zip(total, redis, strict=True)]
    shares = [r["server_cpu_s"] / r["loadgen"]["measured_s"] for r in runs]
    # Per worker: the median over runs of each worker position (workers in PID order).
    per_run = [per_worker_ms(r) for r in runs]
    width = min((len(p) for p in per_run), default=0)
    workers = [_median([p[i] for p in per_run]) for i in range(width)]
    return (
        f"| {case.target} | {_median(rates):,.0f} | {each(_median(total))} | "
        f"{each(_median(server))} | {each(_median(redis))} | "
        f"{' / '.join(each(w) for w in workers) or '-'} | "
        f"{_median(shares):.2f} cores, {len(runs)} runs |"
    )


def _order(case: Case) -> tuple[bool, int]:
    """Ours before the baseline's, then by worker count ("1 process" or "N workers")."""
    count = case.target.split(", ")[1].split()[0]
    return ("baseline" in case.target, int(count) if count.isdigit() else 0)


def scaling_lines(cases: list[Case]) -> list[str]:
    """The table of pushwire's Redis-broker targets by worker count, per fan-out size."""
    group = [
        c
        for c in cases
        if c.workload == "redis" and c.server == "pushwire" and "Redis broker" in c.target
    ]
    if not any(c.runs for c in group):
        return []
    lines = [
        "### CPU per delivery by worker count (pushwire on the Redis broker, same run)",
        "",
        "CPU ms per 1,000 deliveries, medians over the valid runs: all = every server "
        "process and redis-server; per worker = a worker's CPU over the deliveries to the "
        "connections it held. Flat figures as workers are added mean each delivery costs "
        "a worker the same: the workers scale with the cores they are given.",
        "",
    ]
    for n in sorted({c.n for c in group}):
        lines += [
            f"N = {n:,} subscribers:",
            "",
            "| server | deliveries/s | CPU ms/1000, all | of which pushwire | of which "
            "redis-server | per worker, its own deliveries | CPU used |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_row(c) for c in sorted((c for c in group if c.n == n), key=_order)]
        lines.append("")
    return lines
