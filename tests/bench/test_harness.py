"""The benchmark harness: its correctness check, and a smoke run of every workload.

The check must catch a server that drops or doubles a message: a deliberately broken toy
server proves it. The smoke runs keep `python -m bench` from rotting; speed is not asserted.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest

from bench import cli
from bench.cases import Case
from bench.harness import Drive, build_loadgen, run_loadgen, running
from bench.records import Run
from bench.redis_fanout import (
    PW_CLUSTER,
    PW_CLUSTER_WORKERS,
    PW_MEMORY,
    PW_REDIS,
    PW_WORKERS,
    SIO_REDIS,
    redis_targets,
)
from bench.report import markdown
from bench.servers import REPO, Target, lab_targets, targets
from tests.bench.synthetic import loadgen_result

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build loadgen.c"
)

# A WebSocket fan-out server with one fault: every 100th message is dropped, or sent twice.
TOY_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.server import broadcast, serve

    fault, port = sys.argv[1], int(sys.argv[2])
    clients = set()
    count = 0

    async def handler(websocket):
        global count
        clients.add(websocket)
        try:
            async for message in websocket:
                if "#BM0," in message:  # the load generator's priming message
                    broadcast(clients, message)
                    continue
                count += 1
                if count % 100 == 0 and fault == "drop":
                    continue
                broadcast(clients, message)
                if count % 100 == 0 and fault == "double":
                    broadcast(clients, message)
        finally:
            clients.discard(websocket)

    async def main():
        async with serve(handler, "127.0.0.1", port, compression=None) as server:
            await server.serve_forever()

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_loadgen(tmp_path_factory.mktemp("build"))


def _fanout(path: str, subscribers: int = 20, procs: int = 1) -> Drive:
    return Drive(
        "fanout",
        [
            "--procs",
            str(procs),
            "--conns",
            str(subscribers),
            "--path",
            path,
            "--pub-path",
            path,
            "--duration",
            "0.5",
            "--drain",
            "1",
            "--timeout",
            "20",
        ],
    )


@pytest.mark.integration
@pytest.mark.parametrize("procs", [1, 3])
@pytest.mark.parametrize(
    ("fault", "counter", "reason"),
    [("drop", "lost", "lost"), ("double", "duplicates", "duplicated")],
)
def test_the_check_catches_a_server_that_drops_or_doubles_a_message(
    loadgen: Path,
    tmp_path: Path,
    fault: str,
    counter: Literal["lost", "duplicates"],
    reason: str,
    procs: int,
) -> None:
    script = tmp_path / "toy_server.py"
    script.write_text(TOY_SERVER)
    command = [sys.executable, str(script), fault, "{port}"]
    with running(command, tmp_path, tmp_path / "toy.log", False, None, {}) as server:
        run = run_loadgen(loadgen, _fanout("/", procs=procs), server, None, timeout=30)
    assert run.loadgen["loadgen_procs"] == procs
    assert run.loadgen[counter] > 0
    assert any("incorrect delivery" in r and reason in r for r in run.invalid), run.invalid


@pytest.mark.integration
@pytest.mark.parametrize("procs", [1, 3])
def test_the_check_passes_on_pushwire(loadgen: Path, tmp_path: Path, procs: int) -> None:
    pushwire = targets()[0]
    with running(pushwire.command, REPO, tmp_path / "pushwire.log", False, None, {}) as server:
        run = run_loadgen(loadgen, _fanout("/ws/bench", procs=procs), server, None, timeout=30)
    assert run.loadgen["ok"], run.loadgen
    assert run.loadgen["loadgen_procs"] == procs
    assert run.loadgen["published"] > 100
    assert run.loadgen["deliveries"] == 20 * run.loadgen["published"]
    assert (run.loadgen["lost"], run.loadgen["duplicates"], run.loadgen["out_of_order"]) == (
        0,
        0,
        0,
    )
    assert not [r for r in run.invalid if "load generator" not in r]


@pytest.mark.integration
def test_a_smoke_run_of_every_workload_on_pushwire(tmp_path: Path) -> None:
    status = cli.main(
        [
            "--smoke",
            "--workloads",
            "fanout,echo,connect,lab",
            "--targets",
            "pushwire",
            "--no-npm",
            "--duration",
            "0.3",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 0
    result = json.loads((tmp_path / "results.json").read_text())
    seen = {(case["workload"], case["target"]) for case in result["cases"]}
    assert {w for w, _ in seen} == {"fanout", "echo", "connect", "lab-fanout", "lab-echo"}
    assert ("lab-fanout", "tcp") in seen and ("lab-fanout", "polling (50 ms)") in seen
    for case in result["cases"]:
        assert case["errors"] == [] and case["runs"], case
        for run in case["runs"]:
            assert [r for r in run["invalid"] if "load generator at" not in r] == [], case["target"]
            assert run["loadgen"]["deliveries"] > 0, case["target"]
    assert "### Transport lab (pushwire only): fan-out" in (tmp_path / "results.md").read_text()
    # The lab's figures, as the demo server's /lab page reads them: one entry per transport.
    lab = json.loads((tmp_path / "lab.json").read_text())
    assert [row["name"] for row in lab["transports"]] == [t.name for t in lab_targets()]
    assert all(row["fanout"]["messages_per_s"] > 0 for row in lab["transports"])


@pytest.mark.integration
@pytest.mark.parametrize("name", [t.name for t in targets() if t.server != "pushwire"])
def test_a_smoke_fanout_on_each_peer_that_is_installed(name: str, tmp_path: Path) -> None:
    target = next(t for t in targets() if t.name == name)
    reason = target.requirement()
    if reason:
        pytest.skip(f"{name}: {reason}")
    status = cli.main(
        [
            "--smoke",
            "--workloads",
            "fanout",
            "--targets",
            name,
            "--no-npm",
            "--subscribers",
            "10",
            "--duration",
            "0.3",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 0
    cases = json.loads((tmp_path / "results.json").read_text())["cases"]
    case = next(c for c in cases if c["target"] == name)
    assert case["errors"] == [] and case["runs"][0]["loadgen"]["lost"] == 0, case


def test_a_peer_that_cannot_run_is_reported_as_skipped_with_its_reason() -> None:
    case = Case("fanout", "Node ws", "node-ws", "websocket", 1000, skipped="node not installed")
    table = markdown([case], "header")
    assert "| Node ws | websocket |" in table and "skipped: node not installed" in table


def _case(
    target: str, rate: int, cpu_s: float = 1.0, limited: bool = False, workload: str = "echo"
) -> Case:
    """A case of one synthetic run: `rate` deliveries in 1 s, `cpu_s` of server CPU."""
    run: Run = {
        "loadgen": loadgen_result(rate),
        "server_cpu_s": cpu_s,
        "server_rss_bytes": 1,
        "server_rss_before": 0,
        "loadgen_cpu_share": 0.95 if limited else 0.5,
        "loadgen_limited": limited,
        "invalid": [],
    }
    return Case(workload, target, target, "websocket", 1000, runs=[run])


def test_where_the_load_generator_was_the_limit_the_ratio_is_per_server_cpu_second() -> None:
    # Both rates are the load generator's (2.0 M/s each), but pushwire needed half the CPU of
    # the ceiling for them: per server CPU-second it is 2x, and the table says so.
    cases = [
        _case("pushwire", 2_000_000, cpu_s=0.5, limited=True, workload="fanout"),
        _case("thin-Python ceiling", 2_000_000, cpu_s=1.0, limited=True, workload="fanout"),
        _case("websockets", 100_000, cpu_s=1.0, workload="fanout"),
    ]
    table = markdown(cases, "header")
    assert "| pushwire | thin-Python ceiling | 2.00x† | 2.00x |" in table
    # websockets was not limited by the load generator, but pushwire was: per CPU too.
    assert "| pushwire | websockets | 40.00x† | 40.00x |" in table
    assert "† The load generator was the limit" in table
    assert "load generator-limited (it had 95% of its core, the server 50%)" in table
    assert "INVALID" not in table


def test_ratios_divide_pushwire_by_the_peer_measured_in_the_same_run() -> None:
    table = markdown([_case("pushwire", 300), _case("websockets", 100)], "header")
    assert "| pushwire | websockets | 3.00x |" in table


@pytest.mark.integration
def test_a_smoke_run_of_the_redis_workload(tmp_path: Path) -> None:
    entries = redis_targets()
    reasons = {e.target.name: e.target.requirement() for e in entries}
    if reasons[PW_WORKERS]:
        pytest.skip(f"{PW_WORKERS}: {reasons[PW_WORKERS]}")
    status = cli.main(
        [
            "--smoke",
            "--workloads",
            "redis",
            "--no-npm",
            "--redis-subscribers",
            "20",
            "--duration",
            "0.3",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 0
    cases = {c["target"]: c for c in json.loads((tmp_path / "results.json").read_text())["cases"]}
    assert set(cases) == set(reasons)
    ran = [PW_WORKERS, PW_MEMORY, PW_REDIS] + ([] if reasons[SIO_REDIS] else [SIO_REDIS])
    ran += [] if reasons[PW_CLUSTER] else [PW_CLUSTER_WORKERS, PW_CLUSTER]
    for name in ran:
        case = cases[name]
        assert case["errors"] == [] and case["runs"], case
        run = case["runs"][0]
        assert [r for r in run["invalid"] if "load generator at" not in r] == [], name
        assert run["loadgen"]["deliveries"] == 20 * run["loadgen"]["published"] > 0, name
    # Both workers took connections, and CPU was counted over the workers and redis-server.
    workers = cases[PW_WORKERS]["runs"][0]
    assert len(workers["connections_per_process"]) == 2, workers["connections_per_process"]
    assert sum(workers["connections_per_process"]) == 21  # 20 subscribers and the publisher
    assert workers["redis_cpu_s"] > 0 and workers["server_cpu_s"] > workers["redis_cpu_s"]
    assert cases[PW_MEMORY]["runs"][0]["redis_cpu_s"] == 0
    if not reasons[PW_CLUSTER]:  # the three masters' CPU is counted too
        assert cases[PW_CLUSTER]["runs"][0]["redis_cpu_s"] > 0
    if reasons[SIO_REDIS]:
        assert cases[SIO_REDIS]["skipped"] == reasons[SIO_REDIS]
    table = (tmp_path / "results.md").read_text()
    assert "### Fan-out through Redis: 1 publisher, N subscribers, 64-byte text (N = 20)" in table
    assert "over each (same run)" in table


def test_a_baseline_tree_runs_each_pushwire_target_again_alongside(tmp_path: Path) -> None:
    from bench.options import parse_args

    args = parse_args(
        [
            "--workloads",
            "connect",
            "--targets",
            "=pushwire subscriber,=Node ws",
            "--baseline-src",
            str(tmp_path),
        ]
    )
    planned = [
        (case.target, target.env.get("PYTHONPATH"))
        for case, target in cli.plan(args)
        if isinstance(target, Target)
    ]
    assert planned == [
        ("pushwire subscriber", None),  # the tree under test: --pushwire-src, set at run time
        ("pushwire subscriber (baseline)", str(tmp_path.resolve())),
        ("Node ws", None),
    ]
