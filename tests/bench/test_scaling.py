"""bench/scaling.py: CPU per delivery per worker, from made-up runs of the redis workload."""

from __future__ import annotations

import pytest

from bench.cases import Case
from bench.records import Run
from bench.scaling import per_worker_ms, scaling_lines
from tests.bench.synthetic import loadgen_result


def _run(deliveries: int, workers: list[tuple[float, int]], redis_cpu_s: float) -> Run:
    cpu = sum(seconds for seconds, _ in workers) + redis_cpu_s
    return {
        "loadgen": loadgen_result(deliveries),
        "server_cpu_s": cpu,
        "server_rss_bytes": 0,
        "server_rss_before": 0,
        "loadgen_cpu_share": 0.5,
        "invalid": [],
        "redis_cpu_s": redis_cpu_s,
        "worker_cpu": workers,
    }


def test_a_worker_is_charged_for_the_deliveries_to_the_connections_it_held() -> None:
    # The parent (no connection) is left out; a worker with a quarter of the connections
    # made a quarter of the 1,000,000 deliveries.
    run = _run(1_000_000, [(0.01, 0), (0.25, 100), (1.5, 300)], 0.1)
    assert per_worker_ms(run) == pytest.approx([1.0, 2.0])


def test_the_table_lists_worker_counts_in_order_with_the_baseline_after() -> None:
    def case(name: str, workers: list[tuple[float, int]]) -> Case:
        return Case("redis", name, "pushwire", "websocket", 400, [_run(1_000_000, workers, 0.5)])

    lines = scaling_lines(
        [
            case("pushwire, 2 workers, Redis broker (baseline)", [(1.0, 200), (1.0, 200)]),
            case("pushwire, 2 workers, Redis broker", [(0.0, 0), (0.5, 200), (0.75, 200)]),
            case("pushwire, 1 process, Redis broker", [(1.0, 400)]),
            Case("redis", "pushwire, 1 process, memory broker", "pushwire", "websocket", 400),
        ]
    )
    rows = [line for line in lines if line.startswith("| pushwire")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| pushwire, 1 process, Redis broker",
        "| pushwire, 2 workers, Redis broker",
        "| pushwire, 2 workers, Redis broker (baseline)",
    ]
    # all 1.75 s + redis 0.5 s over 1,000,000 deliveries; each worker over its 500,000
    assert "| 1,000,000 | 1.750 | 1.250 | 0.500 | 1.000 / 1.500 |" in rows[1]
