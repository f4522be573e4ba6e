"""Chaos runs, one per fault, over two nodes and Redis, with a subscriber on each of the
Python client's transports (each also a user sent direct messages): every channel message,
and every direct message of the user's inbox, arrives once and in order, or inside a
reported gap with the exact range.

A failing run prints its seed: `CHAOS_SEED=<seed> pytest tests/chaos -k <fault>` replays
the same faults. Figures of longer runs: docs/delivery.md (`python -m bench --workloads
chaos`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from tests.chaos.scenario import PYTHON_TRANSPORTS, Plan, Report, run
from tests.chaos.schedule import seed_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_redis")]

#: Each fault with the seed of its run (a fixed one: CI runs the same faults every time).
SEEDS: Final = {
    "reset": 1401,
    "truncate": 1402,
    "stall": 1403,
    "blackhole": 1404,
    "node_down": 1405,
    "kill": 1406,
    "redis_volatile": 1407,
    "redis_persistent": 1408,
    "switch": 1409,
}
#: The switch run: each client starts on WebSocket and has one transport to fall back to.
SWITCHING: Final = tuple(
    ("websocket", t) for t in PYTHON_TRANSPORTS if t not in ("websocket", "tcp")
)


def plan(fault: str) -> Plan:
    return Plan(
        fault,
        (fault,),
        seed=seed_for(SEEDS[fault]),
        length=4.5,
        every=2.0,
        rate=100.0,
        python=SWITCHING if fault == "switch" else Plan.python,
        direct=True,
        settle=10.0,
    )


# One run per fault serves both tests of that fault (channel and direct).
_reports: dict[str, Report] = {}


async def report_for(fault: str, directory: Path) -> Report:
    if fault not in _reports:
        _reports[fault] = await run(plan(fault), directory)
    return _reports[fault]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", list(SEEDS))
async def test_channel_messages_arrive_once_in_order_or_in_an_exact_gap(
    fault: str, tmp_path: Path
) -> None:
    report = await report_for(fault, tmp_path)
    violations = report.violations()
    assert not violations, "\n".join([report.summary(), *violations])
    for counts in report.channel.values():
        assert counts.received > 0, report.summary()
    if fault == "switch":
        for label, used in report.transports.items():
            assert len(used) == 2, f"{label} received over {used} only"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", list(SEEDS))
async def test_direct_messages_arrive_once_in_order_or_in_an_exact_gap(
    fault: str, tmp_path: Path
) -> None:
    report = await report_for(fault, tmp_path)
    violations = report.violations(direct=True)
    assert not violations, "\n".join([report.summary(), *violations])
