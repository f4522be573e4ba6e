"""The embedded broker: one process, no I/O, delivery inside `publish`.

Presence lives in a `PresenceTable`; its events are delivered inside `presence_join` and
`presence_leave`. One process has no node that could die alone: entries never expire here.
The users' inboxes (direct messages) live in `MemoryInboxes` (inbox.py).

Idempotency keys live in an insertion-ordered dict, (channel, key) -> (expiry, position):
every key lives the same `idempotency_ttl`, so the oldest expires first and expired keys are
swept from the front; beyond `max_idempotency_keys` the oldest is forgotten early.

History is bounded per channel (count, bytes of data, age) and in total across channels
(`history_total_bytes`, counting `MESSAGE_OVERHEAD` per message besides its data). The total
is kept oldest-first across channels with one deque of the streams in publish order, one
entry per kept message: a channel's own trims leave its oldest entries there stale, counted
per stream (`_Stream.stale`) and skipped when met, and the deque is compacted when stale
entries outnumber live ones. A client that resumes from a trimmed position gets a gap.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ..clock import LOOP_CLOCK, Clock
from ..message import Data, Message, Position
from ..presence import PresenceSnapshot, PresenceTable
from .base import (
    DeliverCallback,
    History,
    HistoryBounds,
    HistoryPolicy,
    PresenceCallback,
    PublishCallback,
    ResubscribedCallback,
)
from .inbox import InboxLimits, MemoryInboxes

__all__ = ["MESSAGE_OVERHEAD", "MemoryBroker"]

#: Bytes a kept message costs besides its data (the Message, its offset and time, the
#: deques' slots, the data object's header): counted by `history_total_bytes`.
MESSAGE_OVERHEAD: Final = 176
_NO_BOUND: Final = 1 << 62  # a byte bound of 0: none


def _anyone(channel: str) -> bool:
    """Every channel's presence events are wanted (no `attach_presence_watched`)."""
    return True


@dataclass(slots=True)
class _Stream:
    epoch: str
    bounds: HistoryBounds
    #: Bytes of data the stream keeps at most.
    max_bytes: int
    offset: int = 0
    history: deque[Message] = field(default_factory=deque)
    #: When each message of `history` was published (the clock's time), oldest first.
    times: deque[float] = field(default_factory=deque)
    #: Bytes of data of `history`.
    size: int = 0
    #: This stream's oldest entries in the broker's publish order whose message is gone.
    stale: int = 0


class MemoryBroker:
    """In-memory fan-out and history for a single process.

    Bounds: `history_size` messages and `history_bytes` bytes of data (0: no such bound) per
    channel, each kept `history_ttl` seconds (a channel's namespace may say otherwise:
    `set_history_policy`); `history_total_bytes` across channels (0: none), data plus
    `MESSAGE_OVERHEAD` per message, the oldest messages of any channel trimmed first (also
    `trim_history`, for the memory budget); `max_channels` channels remembered (least recently
    used forgotten first; a forgotten channel comes back with a new epoch, so a client that
    recovers across it is told its history is gone); idempotency keys for `idempotency_ttl`
    seconds, at most `max_idempotency_keys` of them (the oldest forgotten first). `clock`
    tells when a key expires. Each user's inbox is bounded by `inbox` (count, bytes, age on
    `clock`; see inbox.py).
    """

    def __init__(
        self,
        history_size: int = 1000,
        max_channels: int = 100_000,
        *,
        history_ttl: float = 3600.0,
        history_bytes: int = 1024 * 1024,
        history_total_bytes: int = 0,
        inbox: InboxLimits | None = None,
        idempotency_ttl: float = 300.0,
        max_idempotency_keys: int = 100_000,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        if history_size < 0 or history_ttl <= 0 or history_bytes < 0 or history_total_bytes < 0:
            raise ValueError(
                "need history_size >= 0, history_ttl > 0, history_bytes >= 0 and "
                "history_total_bytes >= 0"
            )
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes
        #: The bound across channels (0: none); may be changed while running.
        self.history_total_bytes = history_total_bytes
        self._bounds = HistoryBounds(history_size, history_ttl, history_bytes)
        #: Bytes history holds now: data plus `MESSAGE_OVERHEAD` per message.
        self.history_held = 0
        #: Messages trimmed by the total bound (`history_total_bytes`, `trim_history`).
        self.history_trimmed = 0
        self._kept = 0  # messages history holds now
        # One entry per kept message, in publish order, plus stale ones (see the module doc).
        self._order: deque[_Stream] = deque()
        self._policy: HistoryPolicy | None = None
        self.max_channels = max_channels
        self.idempotency_ttl = idempotency_ttl
        self.max_idempotency_keys = max_idempotency_keys
        self._clock = clock
        # (channel, key) -> (when it expires, the first publish's position)
        self._seen: OrderedDict[tuple[str, str], tuple[float, Position]] = OrderedDict()
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._deliver: DeliverCallback | None = None
        self._deliver_presence: PresenceCallback | None = None
        # Whether a channel has a watcher where events go (`Presence.watched`): none is made
        # for the others (most joins).
        self._presence_watched: Callable[[str], bool] = _anyone
        self.presence_table = PresenceTable()
        self.inboxes = MemoryInboxes(inbox, clock)

    def attach(self, deliver: DeliverCallback) -> None:
        self._deliver = deliver

    def attach_presence(self, deliver: PresenceCallback) -> None:
        self._deliver_presence = deliver
        self._presence_watched = _anyone  # (until its owner says which it wants)

    def attach_presence_watched(self, watched: Callable[[str], bool]) -> None:
        """`watched(channel)`: whether the presence callback wants `channel`'s events (its
        hub has a watcher of it); no event is made for the others."""
        self._presence_watched = watched

    def attach_resubscribed(self, callback: ResubscribedCallback) -> None:
        """Nothing to do: this broker has no connection to lose."""

    @property
    def continuity(self) -> int:
        """Always 0: live delivery here is never broken."""
        return 0

    @property
    def direct(self) -> MemoryInboxes:
        """The users' inboxes, in this process."""
        return self.inboxes

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._deliver = None
        self._deliver_presence = None
        self.inboxes.close()

    def set_history_policy(self, policy: HistoryPolicy) -> None:
        self._policy = policy

    def _stream(self, channel: str) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None:
            policy = self._policy
            bounds = (policy(channel) if policy is not None else None) or self._bounds
            max_bytes = bounds.max_bytes if bounds.max_bytes is not None else self.history_bytes
            stream = _Stream(secrets.token_hex(4), bounds, max_bytes or _NO_BOUND)
            self._streams[channel] = stream
            if len(self._streams) > self.max_channels:
                self._forget(self._streams.popitem(last=False)[1])
        else:
            self._streams.move_to_end(channel)
        return stream

    def _forget(self, stream: _Stream) -> None:
        """A stream no longer remembered: its messages are gone."""
        kept = len(stream.history)
        self._kept -= kept
        self.history_held -= stream.size + kept * MESSAGE_OVERHEAD
        stream.stale += kept
        stream.size = 0
        stream.history.clear()
        stream.times.clear()

    def _trim(self, stream: _Stream, now: float) -> None:
        """Keep the stream within its own bounds: count, bytes, age (oldest first)."""
        bounds = stream.bounds
        history, times = stream.history, stream.times
        oldest = now - bounds.ttl
        dropped = 0
        while history and (
            len(history) > bounds.size or stream.size > stream.max_bytes or times[0] < oldest
        ):
            size = len(history.popleft().data)
            times.popleft()
            stream.size -= size
            self.history_held -= size + MESSAGE_OVERHEAD
            dropped += 1
        stream.stale += dropped
        self._kept -= dropped

    def trim_history(self, nbytes: int) -> int:
        """Forget the oldest messages of any channel until `nbytes` are freed (or history is
        empty); the bytes freed (as `history_held` counts them)."""
        order = self._order
        freed = 0
        while freed < nbytes and order:
            stream = order.popleft()
            if stream.stale:
                stream.stale -= 1
                continue
            size = len(stream.history.popleft().data)
            stream.times.popleft()
            stream.size -= size
            freed += size + MESSAGE_OVERHEAD
            self._kept -= 1
            self.history_trimmed += 1
        self.history_held -= freed
        return freed

    def _compact(self) -> None:
        """Drop the stale entries of the publish order: each stream's first `stale` ones."""
        kept: deque[_Stream] = deque()
        for stream in self._order:
            if stream.stale:
                stream.stale -= 1
            else:
                kept.append(stream)
        self._order = kept

    def publish(
        self,
        channel: str,
        data: Data,
        done: PublishCallback | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        if idempotency_key is not None:
            first = self._first(channel, idempotency_key)
            if first is not None:
                if done is not None:
                    done(Message(channel, first.epoch, first.offset, data))
                return
        stream = self._stream(channel)
        stream.offset += 1
        message = Message(channel, stream.epoch, stream.offset, data)
        if idempotency_key is not None:
            expires = self._clock.time() + self.idempotency_ttl
            self._seen[channel, idempotency_key] = (expires, message.position)
            if len(self._seen) > self.max_idempotency_keys:
                self._seen.popitem(last=False)
        if stream.bounds.size:
            now = self._clock.time()
            history = stream.history
            history.append(message)
            stream.times.append(now)
            size = len(data)
            stream.size += size
            self.history_held += size + MESSAGE_OVERHEAD
            self._kept += 1
            order = self._order
            order.append(stream)
            if (
                len(history) > stream.bounds.size
                or stream.size > stream.max_bytes
                or stream.times[0] < now - stream.bounds.ttl
            ):
                self._trim(stream, now)
            total = self.history_total_bytes
            if total and self.history_held > total:
                self.trim_history(self.history_held - total)
            if len(order) > 2 * self._kept + 1024:
                self._compact()
        if self._deliver is not None:
            self._deliver(message)
        if done is not None:
            done(message)

    def _first(self, channel: str, key: str) -> Position | None:
        """The position of the publish to `channel` that used `key`, while remembered."""
        now = self._clock.time()
        seen = self._seen
        while seen:
            oldest = next(iter(seen.values()))
            if oldest[0] > now:
                break
            seen.popitem(last=False)
        entry = seen.get((channel, key))
        return entry[1] if entry is not None else None

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    def last_position(self, channel: str) -> Position:
        stream = self._stream(channel)
        return Position(stream.epoch, stream.offset)

    async def position(self, channel: str) -> Position:
        return self.last_position(channel)

    async def history(self, channel: str, since: Position) -> History:
        stream = self._stream(channel)
        self._trim(stream, self._clock.time())
        now = Position(stream.epoch, stream.offset)
        if since.epoch != stream.epoch:
            return History(list(stream.history), False, now)
        messages = [m for m in stream.history if m.offset > since.offset]
        first_kept = stream.history[0].offset if stream.history else stream.offset + 1
        complete = since.offset >= first_kept - 1
        return History(messages, complete, now)

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        deliver = self._deliver_presence
        if deliver is None or not self._presence_watched(channel):
            self.presence_table.add(channel, member, entry)
            return
        for event in self.presence_table.join(channel, member, entry):
            deliver(event)

    def presence_leave(self, channel: str, member: str) -> None:
        deliver = self._deliver_presence
        if deliver is None or not self._presence_watched(channel):
            self.presence_table.leave(channel, (member,), announce=False)
            return
        for event in self.presence_table.leave(channel, (member,)):
            deliver(event)

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        return self.presence_table.snapshot(channel, limit)
