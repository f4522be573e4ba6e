"""The embedded broker: one process, no I/O, delivery inside `publish`.

Presence lives in a `PresenceTable`; its events are delivered inside `presence_join` and
`presence_leave`. One process has no node that could die alone: entries never expire here.
The users' inboxes (direct messages) live in `MemoryInboxes` (inbox.py).

Idempotency keys live in an insertion-ordered dict, (channel, key) -> (expiry, position):
every key lives the same `idempotency_ttl`, so the oldest expires first and expired keys are
swept from the front; beyond `max_idempotency_keys` the oldest is forgotten early.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

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

__all__ = ["MemoryBroker"]


@dataclass(slots=True)
class _Stream:
    epoch: str
    bounds: HistoryBounds
    offset: int = 0
    history: deque[Message] = field(default_factory=deque)
    #: When each message of `history` was published (the clock's time), oldest first.
    times: deque[float] = field(default_factory=deque)

    def trim(self, now: float) -> None:
        """Forget the messages older than the stream's `ttl`."""
        oldest = now - self.bounds.ttl
        times, history = self.times, self.history
        while times and times[0] < oldest:
            times.popleft()
            history.popleft()


class MemoryBroker:
    """In-memory fan-out and history for a single process.

    Bounds: `history_size` messages per channel, each kept `history_ttl` seconds (a channel's
    namespace may say otherwise: `set_history_policy`), and `max_channels` channels remembered
    (least recently used forgotten first; a forgotten channel comes back with a new epoch, so
    a client that recovers across it is told its history is gone); idempotency keys for
    `idempotency_ttl` seconds, at most `max_idempotency_keys` of them (the oldest forgotten
    first). `clock` tells when a key expires. Each user's inbox is bounded by `inbox`
    (count, bytes, age on `clock`; see inbox.py).
    """

    def __init__(
        self,
        history_size: int = 1000,
        max_channels: int = 100_000,
        *,
        history_ttl: float = 3600.0,
        inbox: InboxLimits | None = None,
        idempotency_ttl: float = 300.0,
        max_idempotency_keys: int = 100_000,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        if history_size < 0 or history_ttl <= 0:
            raise ValueError("need history_size >= 0 and history_ttl > 0")
        self.history_size = history_size
        self.history_ttl = history_ttl
        self._bounds = HistoryBounds(history_size, history_ttl)
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
        self.presence_table = PresenceTable()
        self.inboxes = MemoryInboxes(inbox, clock)

    def attach(self, deliver: DeliverCallback) -> None:
        self._deliver = deliver

    def attach_presence(self, deliver: PresenceCallback) -> None:
        self._deliver_presence = deliver

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
            stream = _Stream(
                secrets.token_hex(4),
                bounds,
                history=deque(maxlen=bounds.size),
                times=deque(maxlen=bounds.size),
            )
            self._streams[channel] = stream
            if len(self._streams) > self.max_channels:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(channel)
        return stream

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
            stream.trim(now)
            stream.history.append(message)
            stream.times.append(now)
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
        stream.trim(self._clock.time())
        now = Position(stream.epoch, stream.offset)
        if since.epoch != stream.epoch:
            return History(list(stream.history), False, now)
        messages = [m for m in stream.history if m.offset > since.offset]
        first_kept = stream.history[0].offset if stream.history else stream.offset + 1
        complete = since.offset >= first_kept - 1
        return History(messages, complete, now)

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        deliver = self._deliver_presence
        for event in self.presence_table.join(channel, member, entry):
            if deliver is not None:
                deliver(event)

    def presence_leave(self, channel: str, member: str) -> None:
        deliver = self._deliver_presence
        for event in self.presence_table.leave(channel, (member,)):
            if deliver is not None:
                deliver(event)

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        return self.presence_table.snapshot(channel, limit)
