"""The server-wide memory budget: one bound on the bytes a process buffers for its clients.

Every part keeps its own bound (a connection's write buffer `max_write_buffer`, a poll
queue, a request body `max_body_bytes`, a channel's history...), but many parts each within
bounds can still add up to more than the machine has. The budget counts them together:

- *consumers*, the things one client holds: a connection (its socket's write buffer and
  what it has received of an unfinished request or frame), a polling client's queue;
- *parts* that are shared: history and inboxes of the memory broker, some of which can be
  trimmed (history, oldest messages first).

The count is taken every `memory_budget_interval` seconds (or less often, so that counting
takes at most 2% of the CPU), not on the hot path: fan-out only writes to sockets, and
asyncio already knows each socket's buffer size. The parts keep a
running total of their own. Over `memory_budget`, what is held is brought back under 90%
of it (`LOW_WATER`), in this order:

1. the greediest consumers are closed, the largest first (only those holding at least
   `MIN_SHED` bytes: a client with little buffered is not the problem), with 4001 "slow
   consumer": they resume their sessions and recover the rest from history;
2. then history is trimmed, oldest messages first (a client that resumes from a trimmed
   position gets a gap).

Bytes of consumers already being closed count as freed (their sockets are aborted after
`close_timeout` if they do not take their close), so one slow consumer is not followed by
its innocent neighbours while its buffer drains.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from ..clock import Clock, Timer

__all__ = ["LOW_WATER", "MIN_SHED", "BudgetConsumer", "MemoryBudget", "machine_budget"]

log = logging.getLogger("pushwire.budget")

#: Over the budget, what is held is brought back under this share of it.
LOW_WATER: Final = 0.9
#: Bytes a consumer must hold to be closed for the budget.
MIN_SHED: Final = 64 * 1024
#: The time between two counts is at least this many times what one took (its CPU share at
#: most 2%; a count costs about a microsecond or two per connection).
MAX_SHARE: Final = 50
#: The smallest budget derived from the machine.
MIN_BUDGET: Final = 64 * 1024 * 1024
_BUFFERED: Final = operator.methodcaller("buffered")
#: Where a cgroup (v2, then v1) says how much memory the process may use.
_CGROUP_LIMITS: Final = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


def machine_budget(configured: int) -> int:
    """`memory_budget`, or (0) a quarter of the memory this process may use: the machine's,
    or its cgroup's limit when lower; at least `MIN_BUDGET`."""
    if configured > 0:
        return configured
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as file:
                text = file.read().strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return max(MIN_BUDGET, memory // 4)


class BudgetConsumer(Protocol):
    """Something one client holds buffered (a connection, a poll queue)."""

    def buffered(self) -> int:
        """Bytes held for or from the client now."""

    def shed(self, reason: str) -> None:
        """Close the client for the budget (4001, `reason`), freeing what it holds."""


#: Bytes a shared part holds now.
Held = Callable[[], int]
#: Frees at least the bytes asked (oldest first) if it can; returns the bytes freed.
Trim = Callable[[int], int]


class MemoryBudget:
    """Counts what is buffered against `limit` bytes, every `interval` seconds once started,
    and sheds the greediest consumers, then trims, when over (see the module docstring)."""

    def __init__(self, limit: int, interval: float, clock: Clock) -> None:
        if limit <= 0 or interval <= 0:
            raise ValueError("need limit > 0 and interval > 0")
        self.limit = limit
        self.interval = interval
        self._clock = clock
        self._consumers: list[tuple[str, Callable[[], Iterable[BudgetConsumer]]]] = []
        self._parts: list[tuple[str, Held, Trim | None]] = []
        # Consumers closed for the budget and still seen, by id (held: no id is reused).
        self._shedding: dict[int, BudgetConsumer] = {}
        self._timer: Timer | None = None
        self._quiet_until = 0.0  # no "nothing done" warning before then
        #: Bytes held at the last count, in total and per part.
        self.in_use = 0
        self.parts: dict[str, int] = {}
        #: The most ever counted.
        self.peak = 0
        #: Consumers closed, and bytes trimmed, for the budget since start.
        self.shed_count = 0
        self.trimmed_bytes = 0

    def add_consumers(self, name: str, source: Callable[[], Iterable[BudgetConsumer]]) -> None:
        """Count the consumers `source` gives, together, as part `name`."""
        self._consumers.append((name, source))
        self.parts.setdefault(name, 0)

    def add_part(self, name: str, held: Held, trim: Trim | None = None) -> None:
        """Count a shared part; `trim` frees some of it when over the budget."""
        self._parts.append((name, held, trim))
        self.parts.setdefault(name, 0)

    def start(self) -> None:
        """Count every `interval` seconds (on the running loop) until `stop`."""
        if self._timer is None:
            self._timer = self._clock.call_later(self.interval, self._tick)

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _tick(self) -> None:
        began = time.perf_counter()
        self.check()
        # A count walks every connection: at most 1/MAX_SHARE of the CPU goes to it.
        spent = time.perf_counter() - began
        self._timer = self._clock.call_later(max(self.interval, spent * MAX_SHARE), self._tick)

    def check(self) -> None:
        """Count what is held now; over the limit, shed and trim."""
        shedding, still = self._shedding, {}
        freeing = total = 0
        parts = self.parts
        for name, source in self._consumers:
            if not shedding:
                held = sum(map(_BUFFERED, source()))  # the common case, kept tight
            else:
                held = 0
                for consumer in source():
                    size = consumer.buffered()
                    held += size
                    if id(consumer) in shedding:
                        still[id(consumer)] = consumer
                        freeing += size
            parts[name] = held
            total += held
        self._shedding = still
        for name, held_of, _trim in self._parts:
            size = held_of()
            parts[name] = size
            total += size
        self.in_use = total
        if total > self.peak:
            self.peak = total
        if total > self.limit:
            self._relieve(total - int(self.limit * LOW_WATER) - freeing)

    def _relieve(self, excess: int) -> None:
        """Free `excess` bytes: the greediest consumers first, then the trimmable parts."""
        if excess <= 0:
            return
        shedding = self._shedding
        candidates = [
            (size, consumer)
            for _name, source in self._consumers
            for consumer in source()
            if id(consumer) not in shedding and (size := consumer.buffered()) >= MIN_SHED
        ]
        candidates.sort(key=lambda pair: pair[0], reverse=True)
        shed = 0
        for size, consumer in candidates:
            if excess <= 0:
                break
            shedding[id(consumer)] = consumer
            consumer.shed(f"slow consumer: server over its memory budget ({size} bytes queued)")
            excess -= size
            shed += 1
        self.shed_count += shed
        trimmed = 0
        for _name, _held, trim in self._parts:
            if excess <= 0:
                break
            if trim is not None:
                freed = trim(excess)
                excess -= freed
                trimmed += freed
        self.trimmed_bytes += trimmed
        now = self._clock.time()
        if shed or trimmed or now >= self._quiet_until:
            # Nothing done (every consumer small, nothing to trim): said once a minute.
            self._quiet_until = now + 60.0
            log.warning(
                "over the memory budget (%d > %d bytes): closed %d consumers, trimmed %d bytes",
                self.in_use,
                self.limit,
                shed,
                trimmed,
            )

    def stats(self) -> dict[str, int]:
        """The budget, what was held at the last count (in total and per part), and what
        was done about it, as `/api/stats` shows them."""
        counters = {
            "memory_budget": self.limit,
            "memory_in_use": self.in_use,
            "memory_peak": self.peak,
            "memory_shed": self.shed_count,
            "memory_trimmed_bytes": self.trimmed_bytes,
        }
        for name, size in self.parts.items():
            counters[f"memory_{name}"] = size
        return counters
