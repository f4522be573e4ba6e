"""The memory budget's decisions, on a manual clock: what it counts, in which order it frees
(the greediest consumers first, then history oldest-first), down to what, and that bytes
already being freed are not freed twice. Consumers here are plain objects holding a number
of bytes, as a connection or a poll queue does."""

from __future__ import annotations

from pushwire.broker.memory import MESSAGE_OVERHEAD, MemoryBroker
from pushwire.clock import ManualClock
from pushwire.core.budget import LOW_WATER, MIN_SHED, MemoryBudget, machine_budget

MIB = 1024 * 1024


class Holder:
    """A consumer holding `held` bytes; shed, it remembers why (its bytes stay until gone)."""

    def __init__(self, held: int) -> None:
        self.held = held
        self.reason: str | None = None

    def buffered(self) -> int:
        return self.held

    def shed(self, reason: str) -> None:
        self.reason = reason


def budget_over(consumers: list[Holder], limit: int = 10 * MIB) -> tuple[MemoryBudget, ManualClock]:
    clock = ManualClock()
    budget = MemoryBudget(limit, 1.0, clock)
    budget.add_consumers("connections", lambda: consumers)
    return budget, clock


def test_at_the_budget_nothing_is_shed() -> None:
    consumers = [Holder(4 * MIB), Holder(6 * MIB)]
    budget, _ = budget_over(consumers)
    budget.check()
    assert budget.in_use == 10 * MIB
    assert budget.parts == {"connections": 10 * MIB}
    assert [c.reason for c in consumers] == [None, None]


def test_one_over_sheds_the_greediest_until_under_the_low_water_mark() -> None:
    small, large, middle = Holder(2 * MIB), Holder(5 * MIB), Holder(3 * MIB + 1)
    budget, _ = budget_over([small, large, middle])
    budget.check()
    # 10 MiB + 1 held, 9 MiB wanted: the largest (5 MiB) is enough.
    assert large.reason is not None and "memory budget" in large.reason
    assert small.reason is None and middle.reason is None
    assert budget.shed_count == 1


def test_several_are_shed_when_the_greediest_is_not_enough() -> None:
    holders = [Holder(7 * MIB // 2) for _ in range(4)]
    budget, _ = budget_over(holders)
    budget.check()  # 14 MiB held, 9 MiB wanted: one of 3.5 MiB is not enough, two are
    assert sum(h.reason is not None for h in holders) == 2


def test_small_consumers_are_never_shed() -> None:
    holders = [Holder(MIN_SHED - 1) for _ in range(200)]
    budget, _ = budget_over(holders, limit=MIN_SHED * 100)
    budget.check()
    assert all(h.reason is None for h in holders)


def test_bytes_being_freed_are_not_freed_twice() -> None:
    # The first one shed keeps its buffer until its socket is dropped: meanwhile the next
    # counts see it and must not shed its neighbours for it.
    greedy, other = Holder(8 * MIB), Holder(3 * MIB)
    budget, clock = budget_over([greedy, other])
    budget.start()
    clock.advance(1.0)
    assert greedy.reason is not None and other.reason is None
    clock.advance(5.0)
    assert other.reason is None
    assert budget.shed_count == 1


def test_history_is_trimmed_oldest_first_once_no_consumer_is_left_to_shed() -> None:
    clock = ManualClock()
    broker = MemoryBroker(clock=clock)
    for index in range(10):
        broker.publish(f"room{index}", "x" * 1000)
    budget = MemoryBudget(5 * (1000 + MESSAGE_OVERHEAD), 1.0, clock)
    budget.add_part("history", lambda: broker.history_held, broker.trim_history)
    budget.check()
    assert broker.history_held <= budget.limit * LOW_WATER
    assert broker.last_position("room0").offset == 1
    assert broker.history_trimmed == 6  # room0..room5, the oldest
    assert budget.trimmed_bytes == 6 * (1000 + MESSAGE_OVERHEAD)


def test_consumers_go_before_history() -> None:
    clock = ManualClock()
    broker = MemoryBroker(clock=clock)
    broker.publish("room", "x" * MIB)
    slow = Holder(2 * MIB)
    budget = MemoryBudget(2 * MIB, 1.0, clock)
    budget.add_consumers("connections", lambda: [slow])
    budget.add_part("history", lambda: broker.history_held, broker.trim_history)
    budget.check()
    assert slow.reason is not None
    assert broker.history_trimmed == 0


def test_stats_show_the_budget_and_each_part() -> None:
    budget, _ = budget_over([Holder(100)], limit=MIB)
    budget.add_part("history", lambda: 50)
    before = budget.stats()
    assert before["memory_budget"] == MIB and before["memory_in_use"] == 0
    budget.check()
    after = budget.stats()
    assert after["memory_in_use"] == 150
    assert after["memory_connections"] == 100 and after["memory_history"] == 50


def test_the_default_budget_is_a_share_of_the_machine() -> None:
    assert machine_budget(12345) == 12345
    derived = machine_budget(0)
    assert derived >= 64 * MIB
