"""The users' inboxes of the embedded broker: one process, no I/O, delivery inside `send_direct`.

Each user's direct messages form a stream like a channel's: an epoch, offsets growing by one
per message, and the newest messages kept for recovery within three bounds (`InboxLimits`):
a count, bytes, and an age on the hub's clock. At most `max_inboxes` users are remembered
(the least recently used forgotten first); a forgotten inbox comes back with a new epoch, so
a client recovering across it is told its messages are lost.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ..clock import LOOP_CLOCK, Clock
from ..message import Data, Message, Position
from .base import DirectCallback, DirectDeliverCallback, DirectSent, History

__all__ = ["InboxLimits", "MemoryInboxes"]


@dataclass(frozen=True, slots=True)
class InboxLimits:
    """How much of each user's inbox is kept: `size` messages, `max_bytes` bytes of data,
    for `ttl` seconds; `max_inboxes` users (memory broker)."""

    size: int = 1000
    max_bytes: int = 1024 * 1024
    ttl: float = 86400.0
    max_inboxes: int = 100_000


@dataclass(slots=True)
class _Inbox:
    epoch: str
    offset: int = 0
    size: int = 0  # bytes of the kept messages
    # (message, when it was stored on the clock), oldest first
    kept: deque[tuple[Message, float]] = field(default_factory=deque)


class MemoryInboxes:
    """Every user's inbox, for one process (the in-memory broker's `direct` part)."""

    def __init__(self, limits: InboxLimits | None = None, clock: Clock = LOOP_CLOCK) -> None:
        self.limits = limits or InboxLimits()
        self._clock = clock
        self._inboxes: OrderedDict[str, _Inbox] = OrderedDict()
        self._deliver: DirectDeliverCallback | None = None
        #: Bytes of data every inbox keeps now.
        self.held = 0

    @property
    def spans_processes(self) -> bool:
        """False: one process; delivery happens inside `send_direct`."""
        return False

    def attach_direct(self, deliver: DirectDeliverCallback) -> None:
        self._deliver = deliver

    def close(self) -> None:
        self._deliver = None

    def send_direct(self, user: str, data: Data, done: DirectCallback | None = None) -> None:
        inbox = self._inbox(user)
        inbox.offset += 1
        message = Message(user, inbox.epoch, inbox.offset, data)
        limits = self.limits
        if limits.size > 0:
            kept = inbox.kept
            kept.append((message, self._clock.time()))
            size = inbox.size = inbox.size + len(data)
            self.held += len(data)
            if len(kept) > limits.size or size > limits.max_bytes:
                while kept and (len(kept) > limits.size or inbox.size > limits.max_bytes):
                    dropped = len(kept.popleft()[0].data)
                    inbox.size -= dropped
                    self.held -= dropped
        if self._deliver is not None:
            self._deliver(user, message)
        if done is not None:
            done(DirectSent(message, 1))

    async def listen_user(self, user: str) -> None:
        return None

    async def unlisten_user(self, user: str) -> None:
        return None

    async def inbox_position(self, user: str) -> Position:
        inbox = self._inbox(user)
        return Position(inbox.epoch, inbox.offset)

    async def inbox_history(self, user: str, since: Position) -> History:
        return self.history_now(user, since)

    def history_now(self, user: str, since: Position) -> History:
        """`inbox_history`, without awaiting."""
        inbox = self._inbox(user)
        self._expire(inbox)
        now = Position(inbox.epoch, inbox.offset)
        if since.epoch != inbox.epoch:
            return History([m for m, _ in inbox.kept], False, now)
        messages = [m for m, _ in inbox.kept if m.offset > since.offset]
        first_kept = inbox.kept[0][0].offset if inbox.kept else inbox.offset + 1
        return History(messages, since.offset >= first_kept - 1, now)

    def _inbox(self, user: str) -> _Inbox:
        inbox = self._inboxes.get(user)
        if inbox is None:
            inbox = self._inboxes[user] = _Inbox(secrets.token_hex(4))
            if len(self._inboxes) > self.limits.max_inboxes:
                self.held -= self._inboxes.popitem(last=False)[1].size
        else:
            self._inboxes.move_to_end(user)
        return inbox

    def _expire(self, inbox: _Inbox) -> None:
        """Drop the messages older than the age bound."""
        kept = inbox.kept
        oldest = self._clock.time() - self.limits.ttl
        while kept and kept[0][1] <= oldest:
            dropped = len(kept.popleft()[0].data)
            inbox.size -= dropped
            self.held -= dropped
