"""The embedded broker: one process, no I/O, delivery inside `publish`.

Presence lives in a `PresenceTable`; its events are delivered inside `presence_join` and
`presence_leave`. One process has no node that could die alone: entries never expire here.
The users' inboxes (direct messages) live in `MemoryInboxes` (inbox.py).
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
    PresenceCallback,
    PublishCallback,
    ResubscribedCallback,
)
from .inbox import InboxLimits, MemoryInboxes

__all__ = ["MemoryBroker"]


@dataclass(slots=True)
class _Stream:
    epoch: str
    offset: int = 0
    history: deque[Message] = field(default_factory=deque)


class MemoryBroker:
    """In-memory fan-out and history for a single process.

    Bounds: `history_size` messages per channel, and `max_channels` channels remembered
    (least recently used forgotten first; a forgotten channel comes back with a new epoch, so
    a client that recovers across it is told its history is gone). Each user's inbox is
    bounded by `inbox` (count, bytes, age on `clock`; see inbox.py).
    """

    def __init__(
        self,
        history_size: int = 1000,
        max_channels: int = 100_000,
        *,
        inbox: InboxLimits | None = None,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        self.history_size = history_size
        self.max_channels = max_channels
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
    def direct(self) -> MemoryInboxes:
        """The users' inboxes, in this process."""
        return self.inboxes

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._deliver = None
        self._deliver_presence = None
        self.inboxes.close()

    def _stream(self, channel: str) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None:
            stream = _Stream(secrets.token_hex(4), history=deque(maxlen=self.history_size))
            self._streams[channel] = stream
            if len(self._streams) > self.max_channels:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(channel)
        return stream

    def publish(self, channel: str, data: Data, done: PublishCallback | None = None) -> None:
        stream = self._stream(channel)
        stream.offset += 1
        message = Message(channel, stream.epoch, stream.offset, data)
        if self.history_size:
            stream.history.append(message)
        if self._deliver is not None:
            self._deliver(message)
        if done is not None:
            done(message)

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
