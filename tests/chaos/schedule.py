"""The faults of a chaos run, drawn from a seed: the same seed gives the same faults, at the
same times, on the same nodes, so a failing run can be replayed (`CHAOS_SEED=<seed>`)."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["DURATIONS", "FAULTS", "FaultEvent", "make_schedule", "seed_for"]

#: Each fault and the range of its duration, in seconds (for `kill` and the Redis restarts:
#: how long the process stays down).
DURATIONS: Final[dict[str, tuple[float, float]]] = {
    "reset": (0.0, 0.0),  # every connection through the proxy reset
    "truncate": (0.1, 0.4),  # answers torn
    "stall": (0.5, 1.5),  # nothing moves, then everything does
    # the same, and on until over 1,000 direct messages were sent (scenario.py)
    "long_stall": (5.0, 5.5),
    "blackhole": (0.5, 1.5),  # bytes vanish, then the connections are reset
    "node_down": (1.0, 2.0),  # the proxy sends nothing to one node
    "kill": (0.3, 1.0),  # one node SIGKILLed, restarted on the same ports
    "redis_volatile": (0.3, 1.0),  # redis-server stopped and started, data lost
    "redis_persistent": (0.3, 1.0),  # the same with an append-only file: data kept
    "switch": (1.0, 2.0),  # WebSocket upgrades refused: clients change transport
    # redis-server stopped, every client connection reset while it is down (the clients
    # resume and re-subscribe during the outage), then started again (issue 14, problem 1)
    "redis_reset": (0.8, 1.2),
}
FAULTS: Final = tuple(DURATIONS)


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault: `kind` from `at` seconds after the run's start, for `duration` seconds,
    on `node` (where the kind concerns one node)."""

    at: float
    kind: str
    duration: float
    node: int

    def __str__(self) -> str:
        return f"{self.kind}@{self.at:.2f}s+{self.duration:.2f}s(node {self.node})"


def make_schedule(
    seed: int, kinds: Sequence[str], length: float, every: float, nodes: int = 2
) -> list[FaultEvent]:
    """One fault of `kinds` (drawn) per `every` seconds of a run of `length` seconds, each
    at a random time inside its slot and over before the slot ends; the first slot starts
    after 0.5 s of calm."""
    for kind in kinds:
        if kind not in DURATIONS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
    rng = random.Random(seed)
    events: list[FaultEvent] = []
    start = 0.5
    while start + every <= length + 1e-9:
        kind = kinds[rng.randrange(len(kinds))]
        low, high = DURATIONS[kind]
        duration = rng.uniform(low, min(high, every / 2))
        at = start + rng.uniform(0.0, every - duration) * 0.5
        events.append(FaultEvent(round(at, 3), kind, round(duration, 3), rng.randrange(nodes)))
        start += every
    return events


def seed_for(default: int) -> int:
    """The seed of a run: `CHAOS_SEED` from the environment (replaying a failure), else
    `default`."""
    value = os.environ.get("CHAOS_SEED")
    return int(value) if value else default
