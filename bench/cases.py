"""A case (one target under one workload at one size) and its figures: median, min, max."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .records import CaseRecord, Figure, Run


@dataclass
class Case:
    """One target under one workload at one size, with its runs."""

    workload: str  # fanout | echo | connect | lab-fanout | lab-echo | redis
    target: str
    server: str
    transport: str
    n: int
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: CaseRecord) -> Case:
        """The case as results.json holds it (its figures are computed again from its runs)."""
        return cls(
            record["workload"],
            record["target"],
            record["server"],
            record["transport"],
            record["n"],
            record["runs"],
            record["skipped"],
            record["errors"],
        )

    @property
    def invalid(self) -> list[str]:
        reasons = [reason for run in self.runs for reason in run["invalid"]]
        return sorted(set(reasons + self.errors))

    @property
    def loadgen_limited(self) -> bool:
        """Most runs had the load generator near the limit of its core: the rate is its limit,
        and the server's deliveries per CPU-second are the figure that compares servers."""
        limited = sum(1 for run in self.runs if run.get("loadgen_limited"))
        return limited * 2 > len(self.runs)

    def as_dict(self) -> CaseRecord:
        return {
            "workload": self.workload,
            "target": self.target,
            "server": self.server,
            "transport": self.transport,
            "n": self.n,
            "skipped": self.skipped,
            "errors": self.errors,
            "runs": self.runs,
            "figures": figures(self),
        }


Metric = Callable[[Run], float | None]


def _per_run(case: Case, metric: Metric) -> list[float]:
    values = []
    for run in case.runs:
        value = metric(run)
        if value is not None:
            values.append(value)
    return values


def _rate(run: Run) -> float | None:
    lg = run["loadgen"]
    return lg["deliveries"] / lg["measured_s"] if lg["measured_s"] else None


def _lat(key: Literal["p50", "p99", "p999"]) -> Metric:
    return lambda run: (
        run["loadgen"]["latency_us"][key] / 1000 if run["loadgen"]["deliveries"] else None
    )


def server_share(run: Run) -> float:
    """The share of its core the server had while the load generator measured."""
    measured = run["loadgen"]["measured_s"]
    return float(run["server_cpu_s"] / measured) if measured else 0.0


def _per_delivery(run: Run, value: float) -> float | None:
    deliveries = run["loadgen"]["deliveries"]
    return value / deliveries if deliveries else None


METRICS: dict[str, Metric] = {
    "rate": _rate,
    "p50_ms": _lat("p50"),
    "p99_ms": _lat("p99"),
    "p999_ms": _lat("p999"),
    "lost": lambda run: float(run["loadgen"]["lost"] + run["loadgen"]["duplicates"]),
    "server_cpu_s": lambda run: run["server_cpu_s"],
    # Deliveries (or round trips) per second of server CPU: the server's own cost, whatever
    # limited the rate. A server short of work pays more per delivery (fewer messages per
    # wake-up), so for a server that was not saturated this figure is on the low side.
    "per_cpu": lambda run: (
        run["loadgen"]["deliveries"] / run["server_cpu_s"] if run["server_cpu_s"] else None
    ),
    "server_share": server_share,
    "server_rss_mib": lambda run: run["server_rss_bytes"] / 2**20,
    "rss_per_conn_kib": lambda run: (
        (run["server_rss_bytes"] - run["server_rss_before"]) / 1024 / run["loadgen"]["ready"]
        if run["loadgen"]["ready"]
        else None
    ),
    "requests_per_msg": lambda run: _per_delivery(run, run["loadgen"]["http_requests"]),
    "bytes_per_msg": lambda run: _per_delivery(
        run, run["loadgen"]["bytes_in"] + run["loadgen"]["bytes_out"]
    ),
    "cpu_ms_per_1000": lambda run: _per_delivery(run, run["server_cpu_s"] * 1e6),
    "loadgen_cpu": lambda run: run["loadgen_cpu_share"],
    # the redis workload (bench/redis_fanout.py): redis-server's share of the server CPU
    "redis_cpu_s": lambda run: run.get("redis_cpu_s"),
}


def figures(case: Case) -> dict[str, Figure]:
    """Median, min and max of each metric over the case's runs."""
    out: dict[str, Figure] = {}
    for name, metric in METRICS.items():
        values = _per_run(case, metric)
        if values:
            out[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return out
