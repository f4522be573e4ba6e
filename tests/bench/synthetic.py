"""Made-up load generator results, for the tests of what the harness makes of them."""

from __future__ import annotations

from bench.records import LoadgenResult


def loadgen_result(deliveries: int) -> LoadgenResult:
    """One subscriber's correct 1-second fan-out run: `deliveries` messages, each on time.

    A test sets what it is about (latency, bytes, ...) on the result.
    """
    return {
        "ok": True,
        "mode": "fanout",
        "conns": 1,
        "ready": 1,
        "errors": 0,
        "closed_early": 0,
        "first_error": "",
        "published": deliveries,
        "deliveries": deliveries,
        "lost": 0,
        "duplicates": 0,
        "out_of_order": 0,
        "setup_s": 0.1,
        "measured_s": 1.0,
        "latency_us": {"p50": 1, "p99": 1, "p999": 1},
        "http_requests": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "loadgen_cpu_s": 0.5,
        "loadgen_cpu_measured_s": 0.5,
        "loadgen_procs": 1,
        "loadgen_cpu_measured_total_s": 0.5,
    }
