"""The hold workload (bench/hold.py) and what it needs of the load generator: connections
held past the server's keepalive (pings answered), spread over loopback source addresses,
and a smoke run of every stage that stops by itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import cli
from bench.harness import build_loadgen, drive_loadgen, python, start_server
from bench.hold import loadgen_pids
from bench.servers import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),  # a few hundred handshakes and the smoke's stages, on a busy machine
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build loadgen.c"),
]


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_loadgen(tmp_path_factory.mktemp("build"))


def _client_addresses(port: int) -> dict[str, int]:
    """Established connections to 127.0.0.1:`port`, counted by their source address."""
    wanted = f"0100007F:{port:04X}"
    found: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[3] == "01":  # the client's side, ESTABLISHED
            raw = bytes.fromhex(fields[1].split(":")[0])[::-1]
            address = ".".join(str(b) for b in raw)
            found[address] = found.get(address, 0) + 1
    return found


def test_held_connections_answer_pings_and_come_from_several_source_addresses(
    loadgen: Path, tmp_path: Path
) -> None:
    # Pings every 0.2 s, dead after 0.2 s more without a pong: a client that does not answer
    # is cut well within the 2.5 s hold.
    command = [python(), "-m", "pushwire", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--set", "ping_interval=0.2", "--set", "ping_timeout=0.2", "--log-level", "warning"]
    server = start_server(command, REPO, tmp_path / "server.log", False, None, {})
    seen: dict[str, dict[str, int]] = {}
    held: list[int] = []

    def mark(name: str) -> None:
        seen[name] = _client_addresses(server.port)
        if name == "open":
            held.extend(loadgen_pids())

    try:
        argv = [str(loadgen), "--mode", "fanout", "--port", str(server.port), "--sync"]
        argv += ["--conns", "30", "--procs", "2", "--sources", "3", "--path", "/ws/bench"]
        argv += ["--pub-path", "/ws/bench", "--hold", "2.5", "--window", "1", "--messages", "4"]
        argv += ["--timeout", "30", "--drain", "10"]
        result = drive_loadgen(argv, mark, timeout=90)
    finally:
        server.stop()
    assert result["ok"], result
    assert result["closed_early"] == 0
    assert result["published"] == 4 and result["deliveries"] == 4 * 30
    assert result["broadcast_ms"]["n"] == 4 and result["broadcast_ms"]["max"] > 0
    assert list(seen) == ["ready", "open", "start", "end"]
    # 30 subscribers over 127.0.1.1-3 (10 each), the publisher from the first
    assert seen["start"] == {"127.0.1.1": 11, "127.0.1.2": 10, "127.0.1.3": 10}
    assert len(held) == 2  # both load generator processes, found by name


def test_a_smoke_run_of_the_hold_workload(tmp_path: Path) -> None:
    stages = "one,pushwire" + (",workers" if shutil.which("redis-server") else "")
    status = cli.main(
        ["--smoke", "--workloads", "hold", "--hold-stages", stages, "--out", str(tmp_path)]
    )
    done = json.loads((tmp_path / "hold.json").read_text())
    assert status == 0, done
    assert len(done) == len(stages.split(","))
    for stage in done:
        lg = stage["loadgen"]
        assert stage["ok"] and lg["ready"] == stage["subscribers"] == lg["conns"], stage
        assert stage["closed"] == 0  # held past the smoke's 0.5 s pings
        assert lg["deliveries"] == 3 * stage["subscribers"] and lg["broadcast_ms"]["n"] == 3
        assert stage["rss_per_connection"] > 0 and stage["handshakes_per_s"] > 0
        # the default max_connections held them: the file limit raised to the hard one
        assert all(limit >= stage["subscribers"] for limit in stage["open_file_limits"])
    if "workers" in stages:
        workers = done[-1]
        assert workers["workers"] == 2
        assert sum(workers["connections_per_worker"]) == workers["subscribers"] + 1
        assert workers["redis_rss_open"] > 0
    table = (tmp_path / "hold.md").read_text()
    assert "server RSS per connection" in table and "time to the last subscriber" in table
    # every load generator process it started is gone
    assert loadgen_pids() == []
