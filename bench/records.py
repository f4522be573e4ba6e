"""The JSON the benchmark reads and writes: the load generator's result, a run, results.json.

These are plain dicts (they go to and come from JSON as they are); the TypedDicts say which
keys each one has. A results.json written by an older harness may lack a key added since:
such keys are `NotRequired`, and the code that reads them gives a default.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Latency(TypedDict):
    """Publish (or send) to receive, in microseconds."""

    p50: float
    p99: float
    p999: float


class Broadcast(TypedDict):
    """Per message, publication to its last delivery, in milliseconds (`n` messages)."""

    n: int
    p50: float
    p99: float
    max: float


class LoadgenResult(TypedDict):
    """The one JSON line that loadgen.c prints at its end (every key, always)."""

    ok: bool
    mode: str  # fanout | echo | connect
    conns: int
    ready: int
    errors: int
    closed_early: int
    first_error: str
    published: int
    deliveries: int
    lost: int
    duplicates: int
    out_of_order: int
    setup_s: float
    measured_s: float
    latency_us: Latency
    http_requests: int
    bytes_in: int
    bytes_out: int
    loadgen_cpu_s: float
    #: The busiest load generator process's CPU while measuring.
    loadgen_cpu_measured_s: float
    loadgen_procs: int
    #: Every load generator process's CPU while measuring, added up.
    loadgen_cpu_measured_total_s: float
    #: Fan-out: seconds until every subscriber was open (absent in older results).
    open_s: NotRequired[float]
    #: Fan-out: each message's time until its last subscriber had it (absent in older results).
    broadcast_ms: NotRequired[Broadcast]


class Run(TypedDict):
    """One run: the load generator's result and what was measured of the server."""

    loadgen: LoadgenResult
    server_cpu_s: float
    server_rss_bytes: int
    server_rss_before: int
    loadgen_cpu_share: float
    #: The load generator was near the limit of its core(s) (absent in older results).
    loadgen_limited: NotRequired[bool]
    #: Why the run is not a valid figure; empty when it is.
    invalid: list[str]
    # The redis workload's runs only (bench/redis_fanout.py):
    #: redis-server's share of `server_cpu_s`.
    redis_cpu_s: NotRequired[float]
    #: The server's processes and redis-server, counted together.
    processes: NotRequired[int]
    #: Established connections held by each server process that held any.
    connections_per_process: NotRequired[list[int]]
    #: Each server process (by PID), its CPU-seconds over the measured phase and the
    #: established connections it held when the phase began (bench/scaling.py).
    worker_cpu: NotRequired[list[tuple[float, int]]]


class Figure(TypedDict):
    """One metric over a case's runs."""

    median: float
    min: float
    max: float


class CaseRecord(TypedDict):
    """A case as results.json holds it."""

    workload: str
    target: str
    server: str
    transport: str
    n: int
    skipped: str | None
    errors: list[str]
    runs: list[Run]
    figures: dict[str, Figure]


class Machine(TypedDict):
    cpu: str
    cores: int | None
    kernel: str
    pinning: str


class About(TypedDict):
    """What the run was: in results.json, and in lab.json for the transport lab's page."""

    command: str
    date: str
    versions: dict[str, str]
    machine: Machine
    runs_per_figure: int
    duration_s: float


class Results(About):
    """results.json: what the run was, and every case with its runs and figures."""

    window: int
    elapsed_s: float
    #: The lines above results.md's tables (absent in older results).
    header: NotRequired[str]
    cases: list[CaseRecord]
