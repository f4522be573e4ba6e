"""The transport lab's compact lab.json (what the demo server's /lab page draws) and its PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cases import Case
from bench.lab_json import CHARTS, lab_chart, lab_summary, write_lab
from bench.records import About, Run
from tests.bench.synthetic import loadgen_result


def _run(deliveries: int, cpu_s: float, requests: int, invalid: list[str] | None = None) -> Run:
    loadgen = loadgen_result(deliveries)
    loadgen["latency_us"] = {"p50": 2000, "p99": 9000, "p999": 12000}
    loadgen["ready"] = 10
    loadgen["http_requests"] = requests
    loadgen["bytes_in"] = deliveries * 66
    return {
        "loadgen": loadgen,
        "server_cpu_s": cpu_s,
        "server_rss_bytes": 1,
        "server_rss_before": 0,
        "loadgen_cpu_share": 0.5,
        "invalid": invalid or [],
    }


def _cases() -> list[Case]:
    busy = ["load generator at 93% of its core: it may be the bottleneck"]
    ws = [_run(1000, 0.9, 0), _run(3000, 1.0, 0, busy), _run(2000, 1.0, 0)]
    longpoll = [_run(500, 0.9, 50, ["incorrect delivery: 1 lost, 0 duplicated, 0 out of order"])]
    return [
        Case("lab-fanout", "websocket (raw)", "pushwire", "websocket", 1000, ws),
        Case("lab-echo", "websocket (raw)", "pushwire", "websocket", 100, [_run(400, 1.0, 0)]),
        Case("lab-fanout", "longpoll", "pushwire", "longpoll", 1000, longpoll),
        Case("fanout", "pushwire", "pushwire", "websocket", 1000, [_run(9, 1.0, 0)]),
    ]


META: About = {
    "command": "python -m bench --workloads lab",
    "date": "2026-12-01T00:00:00Z",
    "versions": {"pushwire": "0.1.0", "node ws": "8.0.0", "aiohttp": "3.0"},
    "machine": {"cpu": "a test CPU", "cores": 2, "kernel": "6.1", "pinning": "none"},
    "runs_per_figure": 3,
    "duration_s": 3.0,
}


def test_the_summary_holds_each_transports_medians_in_the_labs_order() -> None:
    summary = lab_summary(_cases(), META)
    assert summary is not None
    assert summary["format"] == "pushwire-lab/1"
    assert (summary["command"], summary["date"]) == (META["command"], META["date"])
    assert summary["versions"] == {"pushwire": "0.1.0"}  # the lab runs pushwire only
    assert (summary["fanout_subscribers"], summary["echo_connections"]) == (1000, 100)
    ws, longpoll = summary["transports"]
    assert (ws["name"], ws["transport"], ws["valid"]) == ("websocket (raw)", "websocket", True)
    assert ws["loadgen_bound"] is True  # its rate is a lower bound, its delivery correct
    assert ws["fanout"] == {
        "messages_per_s": 2000.0,  # the median of 1,000, 3,000 and 2,000
        "p50_ms": 2.0,
        "p99_ms": 9.0,
        "requests_per_msg": 0.0,
        "bytes_per_msg": 66.0,
        "cpu_ms_per_1000": 500.0,  # the median of 900, 333 and 500 ms per 1,000
    }
    assert ws["echo"] is not None and ws["echo"]["round_trips_per_s"] == 400.0
    assert longpoll["valid"] is False and longpoll["status"].startswith("INVALID: incorrect")
    assert longpoll["loadgen_bound"] is False
    assert longpoll["fanout"] is not None and longpoll["echo"] is None
    assert longpoll["fanout"]["requests_per_msg"] == 0.1


def test_no_lab_cases_write_no_lab_json(tmp_path: Path) -> None:
    assert lab_summary(_cases()[3:], META) is None
    assert write_lab(_cases()[3:], META, tmp_path) is None
    assert not (tmp_path / "lab.json").exists()


def test_lab_json_and_its_chart_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert write_lab(_cases(), META, tmp_path) is None
    written = json.loads((tmp_path / "lab.json").read_text())
    assert [row["name"] for row in written["transports"]] == ["websocket (raw)", "longpoll"]
    assert (tmp_path / "lab.png").read_bytes().startswith(b"\x89PNG")
    assert lab_chart(written, tmp_path / "again.png") is None
    assert len(CHARTS) == 6
