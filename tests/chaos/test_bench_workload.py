"""`python -m bench --workloads chaos`: its options, its plans and its table (no run)."""

from __future__ import annotations

from bench.chaos import CHAOS_FAULTS, plans, table
from bench.options import parse_args
from tests.chaos.ledger import Counts
from tests.chaos.scenario import Plan, Report
from tests.chaos.schedule import FaultEvent


def test_chaos_is_a_workload_of_its_own_and_not_a_default() -> None:
    assert "chaos" not in parse_args([]).workloads
    options = parse_args(["--workloads", "chaos", "--chaos-messages", "9000"])
    assert options.workloads == ["chaos"]
    assert options.chaos_messages == 9000
    assert parse_args(["--workloads", "chaos", "--smoke"]).chaos_messages == 2000


def test_one_plan_per_fault_sharing_the_messages() -> None:
    options = parse_args(["--workloads", "chaos", "--chaos-messages", "9000", "--chaos-seed", "5"])
    made = plans(options)
    assert [p.label for p in made] == list(CHAOS_FAULTS)
    assert {p.messages for p in made} == {1000}
    assert [p.seed for p in made] == list(range(5, 5 + len(CHAOS_FAULTS)))
    switch = made[list(CHAOS_FAULTS).index("switch")]
    assert all(len(transports) == 2 for transports in switch.python)


def test_chosen_faults_run_in_the_order_asked_with_their_own_seed_and_share() -> None:
    options = parse_args(
        ["--workloads", "chaos", "--chaos-messages", "9000", "--chaos-faults", "kill,reset"]
    )
    made = plans(options)
    assert [p.label for p in made] == ["kill", "reset"]
    assert [p.seed for p in made] == [1 + list(CHAOS_FAULTS).index("kill"), 1]
    assert {p.messages for p in made} == {1000}


def test_the_table_has_a_row_per_transport_and_fault_and_the_recovery_times() -> None:
    report = Report(Plan("kill", ("kill",), seed=1), [FaultEvent(1.0, "kill", 0.5, 0)])
    report.channel["sse"] = Counts(sent=10, received=8, lost_in_gap=2, gaps=1)
    report.recovery = [0.5, 1.5]
    report.elapsed = 3.0
    report.attempted, report.publishing, report.load = 10, 2.0, [1.0, 3.0]
    text = table([report])
    assert "| kill | sse | 10 | 8 | 2 | 0 | 0 | 0 | 1 (0) |" in text
    assert "| **all** | | 10 | 8 | 2 | 0 | 0 | 0 | 1 (0) |" in text
    assert "| kill | 1 | 1.00 s | 1.49 s | 0 | 3 s | 5/s of 100/s | 1.0-3.0 (mean 2.0) |" in text
