"""The broker contract: the only code that knows about other processes.

A broker gives every channel message its position (epoch, offset), delivers it to every
process that subscribed to the channel, and keeps a bounded history for recovery. Each user
has such a stream too, its inbox (`DirectBroker`): direct messages get a position in it and
are kept, bounded, for the user's sessions to recover what they missed, exactly like a
channel's. It also
keeps every channel's presence (pushwire.presence): the members every node sees, their join
and leave events delivered to the processes subscribed to the channel, entries that expire
when their node stops refreshing them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import PushwireError
from ..message import Data, Message, Position
from ..presence import PresenceEvent, PresenceSnapshot

__all__ = [
    "Broker",
    "BrokerHealth",
    "DeliverCallback",
    "Delivery",
    "DirectBroker",
    "DirectCallback",
    "DirectDeliverCallback",
    "DirectSent",
    "History",
    "HistoryBounds",
    "HistoryPolicy",
    "NodeLink",
    "PresenceCallback",
    "PublishCallback",
    "ResubscribedCallback",
]

#: Called by the broker, on the event loop, for each message of a subscribed channel.
DeliverCallback = Callable[[Message], None]
#: Called once a publish is stored and fanned out (with the message) or failed (with the error).
PublishCallback = Callable[[Message | PushwireError], None]
#: Called by the broker, on the event loop, for each presence change of a subscribed channel
#: (in version order per channel).
PresenceCallback = Callable[[PresenceEvent], None]
#: Called by the broker, on the event loop, with each direct message to a listened user:
#: `(user, message)`, the message's `channel` being the user and its epoch and offset its
#: place in the user's inbox. Every process sees a user's direct messages in offset order.
DirectDeliverCallback = Callable[[str, Message], None]
#: Called with the channels whose live messages may have been missed while the broker's
#: connection was down, once it is restored: their history tells what (see `Broker`).
ResubscribedCallback = Callable[[frozenset[str]], None]


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """How much of a channel's history is kept: `size` messages (0: none), each for `ttl`
    seconds, and at most `max_bytes` bytes of data (None: the broker's own byte bound)."""

    size: int
    ttl: float
    max_bytes: int | None = None


#: The history bounds of a channel, or None for the broker's own (`Broker.set_history_policy`).
HistoryPolicy = Callable[[str], "HistoryBounds | None"]


# Not frozen: one is made per direct message, and a frozen dataclass's __init__ costs 3-4x
# as much (see Message). Nothing mutates one.
@dataclass(slots=True)
class DirectSent:
    """A direct message stored in its user's inbox: `message` (its `channel` is the user) and
    how many processes listening to the user received it live (`receivers`)."""

    message: Message
    receivers: int


#: Called once a direct message was stored and published, or failed (with the error).
DirectCallback = Callable[[DirectSent | PushwireError], None]


@dataclass(frozen=True, slots=True)
class History:
    """What a broker still holds after a position.

    `messages` are those after `since`, in order. `complete` is False when history no longer
    reaches back to `since` (trimmed, or a new epoch): `messages` then start at `first`, and
    everything between `since` and it is lost.
    """

    messages: list[Message]
    complete: bool
    position: Position

    def lost(self, since: Position, ended: Position | None = None) -> Position | None:
        """The last position lost after `since` (a gap's `to`), or None when nothing is.

        Lost are the messages between `since` and the first one history holds. After an
        epoch change that means the rest of `since`'s epoch and the new epoch's offsets
        before the first one held. `ended` is where `since`'s epoch is known to have ended
        (the last position of it this process received): when `since` is there and history
        holds the new epoch from its first offset, nothing is lost. Without it the end of the
        old epoch is unknown, and counted as lost.
        """
        if self.complete:
            return None
        first = self.messages[0].offset if self.messages else self.position.offset + 1
        if (
            since.epoch != self.position.epoch
            and first == 1
            and ended is not None
            and ended.epoch == since.epoch
            and ended.offset <= since.offset
        ):
            return None
        return Position(self.position.epoch, first - 1)


class Broker(Protocol):
    """Fan-out and history across processes. The in-memory broker serves a single process."""

    def attach(self, deliver: DeliverCallback) -> None:
        """Set the callback that receives this process's subscribed messages."""

    def attach_resubscribed(self, callback: ResubscribedCallback) -> None:
        """Set the callback told which channels may have missed live messages after the
        broker lost its connection and restored it, maybe none: the users' direct messages
        may have been missed too (a broker that cannot lose one, like the in-memory broker,
        never calls it)."""

    @property
    def continuity(self) -> int | None:
        """Which unbroken stretch of live delivery this process is in: the same number at two
        moments means every message published in between, to any channel or user this
        process receives, reached it live; None while it may be missing some now (the
        connection is down, or its subscriptions not confirmed yet). A broker that cannot
        lose one, like the in-memory broker, is always 0."""

    @property
    def direct(self) -> DirectBroker:
        """The users' inboxes: where direct messages get their positions and are kept."""

    async def start(self) -> None:
        """Connect to whatever the broker needs."""

    async def close(self) -> None:
        """Release connections; no delivery after it returns."""

    def publish(
        self,
        channel: str,
        data: Data,
        done: PublishCallback | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Store `data` as the channel's next message and deliver it everywhere.

        Publishes from one process are delivered in the order of their calls. `done` is
        called with the message (its position assigned) or with the error.

        With an `idempotency_key` (checked by `check_idempotency_key`), a publish to the same
        channel with the same key within the broker's idempotency window (every process of
        the broker sees it) stores and delivers nothing: `done` gets a message at the first
        one's position. A publisher that did not learn whether its publish was stored (an
        `Unavailable` after the broker ran it) retries with the same key and publishes once.
        """

    def set_history_policy(self, policy: HistoryPolicy) -> None:
        """Keep each channel's history within the bounds `policy` gives it (a namespace's
        `history_size` and `history_ttl`), the broker's own where it gives None (or, for
        the byte bound, where its `max_bytes` is None). Asked when a
        channel's history is written or read, so set it before the first publish."""

    async def subscribe(self, channel: str) -> None:
        """This process wants the channel's messages (called once per channel, on first use)."""

    async def unsubscribe(self, channel: str) -> None:
        """This process no longer wants the channel's messages."""

    async def position(self, channel: str) -> Position:
        """The channel's last position (offset 0 before its first message)."""

    async def history(self, channel: str, since: Position) -> History:
        """The channel's messages after `since`, as far as history reaches."""

    # -- presence ---------------------------------------------------------------------------

    def attach_presence(self, deliver: PresenceCallback) -> None:
        """Set the callback that receives presence events of this process's channels."""

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        """This process's session `member` is in `channel`, with its entry (JSON bytes).

        The broker keeps it present (refreshing it every `presence_ttl / 3` seconds) until
        `presence_leave`; joins, leaves and snapshot reads of one process happen in call
        order. A member already present is not announced again.
        """

    def presence_leave(self, channel: str, member: str) -> None:
        """This process's session `member` left `channel` (announced once)."""

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        """The channel's members (at most `limit` entries) and count, after every join and
        leave this process asked for before; expired entries are removed first.

        Raises:
            Unavailable: the broker cannot be reached.
        """


class DirectBroker(Protocol):
    """Each user's inbox: a stream of direct messages with (epoch, offset) positions, kept
    within bounds (count, bytes, age) for recovery, and delivered to every process that
    listens to the user.

    A process listens to each user of whom it holds a session. The in-memory broker's inbox
    serves one process (`spans_processes` False: delivery happens inside `send_direct`, and
    there is nobody to listen for); Redis keeps one Stream per user.
    """

    @property
    def spans_processes(self) -> bool:
        """Whether direct messages reach other processes (listening is then needed)."""

    def attach_direct(self, deliver: DirectDeliverCallback) -> None:
        """Set the callback that receives the direct messages of this process's users."""

    def send_direct(self, user: str, data: Data, done: DirectCallback | None = None) -> None:
        """Store a direct message as the next of `user`'s inbox and deliver it to every
        process listening to the user (this one included). Direct messages from one process
        are stored in the order of their calls, channel publishes included. `done` gets the
        stored message and how many processes received it, or the error (`Unavailable`)."""

    async def listen_user(self, user: str) -> None:
        """This process wants `user`'s direct messages; returns once the broker confirmed
        it (or once the connection was lost: it is listened again on reconnection)."""

    async def unlisten_user(self, user: str) -> None:
        """This process no longer wants `user`'s direct messages."""

    async def inbox_position(self, user: str) -> Position:
        """The last position of `user`'s inbox (offset 0 before its first message).

        Raises:
            Unavailable: the broker cannot be reached.
        """

    async def inbox_history(self, user: str, since: Position) -> History:
        """The messages of `user`'s inbox after `since`, as far as its bounds reach.

        Raises:
            Unavailable: the broker cannot be reached.
        """


class Delivery(enum.Enum):
    """What became of a payload sent to a node."""

    DELIVERED = "delivered"
    #: The node is dead (its liveness key expired).
    DEAD = "dead"
    #: The node is alive but did not receive it (its subscription is being restored).
    MISSED = "missed"


class NodeLink(Protocol):
    """How nodes reach one another (`pushwire.broker.redis.RedisNodes`)."""

    node: str

    async def start(self, receive: Callable[[bytes], None]) -> None:
        """Receive what other nodes send to this one; announce this node alive."""

    async def close(self) -> None:
        """Stop receiving; other nodes see this one gone."""

    async def send(self, node: str, payload: bytes) -> Delivery:
        """Send `payload` to `node`.

        Raises:
            Unavailable: the link is down.
        """


@runtime_checkable
class BrokerHealth(Protocol):
    """A broker that reaches another server (Redis) and can say how that goes: read by
    `/readyz` and `/metrics`. A broker without it (memory) is always ready."""

    def health_stats(self) -> dict[str, float]:
        """`up` (1.0 while every connection works, else 0.0), `reconnects` (outages ended),
        `round_trips` and `round_trip_seconds` (to the server), `pending` (queued)."""
