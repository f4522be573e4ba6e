"""The ledger: what was published, what each subscriber got, and the rules its record must
satisfy (docs/delivery.md, "The ledger's rules").

A channel's positions are `(epoch, offset)`; offsets count 1, 2, 3… per epoch, one per
message stored, so every offset up to the largest one known in an epoch is a message, even
one whose publisher never heard back. Epochs are ordered by when they were first seen.

For each subscriber, every message after the position its subscription began at must be:

- received exactly once, in position order, with the data its publisher sent at that
  position; or
- inside a `Gap` the client reported, whose range starts at the last position the
  subscriber had (`from`) and covers no message the subscriber received.

- published after the client told the app that the subscription failed for good (the
  Python client's `Failure`, pushwire.js's `error` event, for the channel): lost, reported.

Anything else is a violation: a message lost silently, a duplicate, a message out of order,
a gap whose range does not match.

Direct messages follow the same rules: each user's inbox is a stream with `(epoch, offset)`
positions (docs/protocol.md, "Direct messages: the user's inbox"), so a user's direct
messages after the inbox position its client was welcomed at are checked with `check` and a
`PublishLog` of that user, exactly like a channel's (a direct-message gap is the client's
`Gap` with `channel` None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Counts",
    "Got",
    "Hole",
    "PublishLog",
    "Record",
    "Stopped",
    "check",
    "last_position",
    "recovery_times",
]

Position = tuple[str, int]
Rank = Callable[[Position], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Got:
    """A message a subscriber received (of a channel, or of its user's inbox), at `at`
    (time.time())."""

    at: float
    epoch: str
    offset: int
    data: str


@dataclass(frozen=True, slots=True)
class Hole:
    """A gap a subscriber's client reported: lost after `start` up to and including
    `end`."""

    at: float
    start: Position
    end: Position


@dataclass(frozen=True, slots=True)
class Stopped:
    """The client told the app that the channel's subscription failed for good (a
    `Failure` item, an `error` event): after `after` (its last position) nothing more is
    owed, and what was published after is lost, reported."""

    at: float
    after: Position
    reason: str


@dataclass
class Record:
    """One subscriber of one channel (or of its user's inbox): `start` is where its
    subscription began (the `subscribed` answer; the welcome's `inbox`), `items` what its
    client yielded, in order."""

    name: str
    start: Position | None = None
    items: list[Got | Hole] = field(default_factory=list)
    stopped: Stopped | None = None


@dataclass
class Counts:
    """A subscriber's (or a cell's) figures."""

    sent: int = 0
    received: int = 0
    lost_in_gap: int = 0
    lost_silently: int = 0
    lost_reported: int = 0  # after the client reported that the subscription failed
    duplicated: int = 0
    gaps: int = 0
    empty_gaps: int = 0  # gaps that covered no message (an epoch change with nothing lost)
    violations: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.sent += other.sent
        self.received += other.received
        self.lost_in_gap += other.lost_in_gap
        self.lost_silently += other.lost_silently
        self.lost_reported += other.lost_reported
        self.duplicated += other.duplicated
        self.gaps += other.gaps
        self.empty_gaps += other.empty_gaps
        self.violations += other.violations

    @property
    def holds(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class _Publish:
    sent_at: float
    position: Position | None = None


class PublishLog:
    """Every publish of one channel: its id (the data), when it was sent, and its position
    (from the publisher's answer, or learnt from a subscriber that received it)."""

    def __init__(self) -> None:
        self.publishes: dict[str, _Publish] = {}
        self._at: dict[Position, str] = {}
        self._epoch_seen: dict[str, float] = {}
        self._top: dict[str, int] = {}  # the largest offset known per epoch
        self._learnt: dict[int, int] = {}  # id(record) -> items of it learnt already

    def sent(self, message_id: str, at: float) -> None:
        self.publishes[message_id] = _Publish(at)

    def placed(self, message_id: str, position: Position, at: float) -> None:
        """`message_id` is stored at `position` (a publisher's answer, or a subscriber saw
        it there)."""
        publish = self.publishes.get(message_id)
        if publish is not None and publish.position is None:
            publish.position = position
        self._at.setdefault(position, message_id)
        epoch, offset = position
        if offset > self._top.get(epoch, 0):
            self._top[epoch] = offset
        self.epoch_seen(epoch, at)

    def epoch_seen(self, epoch: str, at: float) -> None:
        seen = self._epoch_seen.get(epoch)
        if seen is None or at < seen:
            self._epoch_seen[epoch] = at

    def learn(self, records: Iterable[Record]) -> None:
        """What subscribers received places the publishes whose answer never came (each
        record's items are learnt once: call it again as records grow)."""
        for record in records:
            if record.start is not None:
                self.epoch_seen(record.start[0], -1.0)
            done = self._learnt.get(id(record), 0)
            self._learnt[id(record)] = len(record.items)
            for item in record.items[done:]:
                if isinstance(item, Got):
                    self.placed(item.data, (item.epoch, item.offset), item.at)
                else:
                    self.epoch_seen(item.start[0], item.at)
                    self.epoch_seen(item.end[0], item.at)

    def ranker(self) -> Rank:
        """Orders positions: epochs by when they were first seen, then offsets."""
        order = sorted(self._epoch_seen, key=self._epoch_seen.__getitem__)
        ranks = {epoch: i for i, epoch in enumerate(order)}

        def rank(position: Position) -> tuple[int, int]:
            return ranks.get(position[0], len(ranks)), position[1]

        return rank

    def positions(self) -> dict[Position, str]:
        """Every position of the channel that holds a message, with its id ("?" for one
        whose id nobody knows: published, never answered, never received)."""
        return {
            (epoch, offset): self._at.get((epoch, offset), "?")
            for epoch, top in self._top.items()
            for offset in range(1, top + 1)
        }

    def final(self) -> Position | None:
        """The channel's last position known (None: nothing published)."""
        if not self._top:
            return None
        rank = self.ranker()
        return max(((epoch, top) for epoch, top in self._top.items()), key=rank)

    def sent_at(self, message_id: str) -> float | None:
        publish = self.publishes.get(message_id)
        return None if publish is None else publish.sent_at


def check(record: Record, log: PublishLog) -> Counts:
    """`record` against the rules (call `log.learn` with every record first)."""
    counts = Counts()
    if record.start is None:
        counts.violations.append(f"{record.name}: never subscribed")
        return counts
    rank = log.ranker()
    positions = log.positions()
    last = record.start
    seen: set[str] = set()
    received: dict[Position, str] = {}
    holes: list[tuple[Position, Position]] = []
    for item in record.items:
        if isinstance(item, Hole):
            counts.gaps += 1
            if item.start != last:
                counts.violations.append(
                    f"{record.name}: gap from {_show(item.start)} to {_show(item.end)}, "
                    f"but the last position it had was {_show(last)}"
                )
            holes.append((item.start, item.end))
            if rank(item.end) > rank(last):
                last = item.end
            continue
        position = (item.epoch, item.offset)
        if item.data in seen:
            counts.duplicated += 1
            counts.violations.append(f"{record.name}: {item.data} again at {_show(position)}")
            continue
        expected = positions.get(position)
        if expected not in (None, "?", item.data):
            counts.violations.append(
                f"{record.name}: {item.data} at {_show(position)}, published as {expected}"
            )
        if rank(position) <= rank(last):
            counts.violations.append(
                f"{record.name}: {item.data} at {_show(position)} after {_show(last)}"
            )
        seen.add(item.data)
        received[position] = item.data
        last = max(last, position, key=rank)
    start = rank(record.start)
    silent: list[Position] = []
    covered = dict.fromkeys(range(len(holes)), 0)
    for position in sorted(positions, key=rank):
        if rank(position) <= start:
            continue
        counts.sent += 1
        inside = [i for i, hole in enumerate(holes) if _inside(rank, position, hole)]
        for i in inside:
            covered[i] += 1
        if position in received:
            counts.received += 1
            if inside:
                counts.violations.append(
                    f"{record.name}: received {received[position]} at {_show(position)} "
                    f"inside a reported gap"
                )
        elif inside:
            counts.lost_in_gap += 1
        elif record.stopped is not None and rank(position) > rank(record.stopped.after):
            counts.lost_reported += 1
        else:
            counts.lost_silently += 1
            silent.append(position)
    counts.empty_gaps = sum(1 for n in covered.values() if n == 0)
    if silent:
        shown = _some([f"{_show(p)}={positions[p]}" for p in silent])
        counts.violations.append(f"{record.name}: lost silently {shown}")
    return counts


def _inside(rank: Rank, position: Position, hole: tuple[Position, Position]) -> bool:
    return rank(hole[0]) < rank(position) <= rank(hole[1])


def _some(items: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _show(position: Position) -> str:
    return f"{position[0]}:{position[1]}"


def last_position(record: Record) -> Position | None:
    """The last position `record` has (received, or skipped by a gap)."""
    for item in reversed(record.items):
        return (item.epoch, item.offset) if isinstance(item, Got) else item.end
    return record.start


def recovery_times(record: Record, log: PublishLog, fault_ends: Sequence[float]) -> list[float]:
    """For each fault's end (time.time()): how long until the subscriber received a message
    published after it (seconds); faults it never recovered from are left out."""
    times: list[float] = []
    arrivals = [(item.at, log.sent_at(item.data)) for item in record.items if isinstance(item, Got)]
    for end in fault_ends:
        for at, sent in arrivals:
            if sent is not None and sent >= end:
                times.append(max(0.0, at - end))
                break
    return times
