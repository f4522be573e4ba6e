"""`ShardedBroker`: channels and users spread over several Redis servers, one `RedisBroker`
each, by the hash slot of their names.

A name's slot is the CRC16 of its hash tag modulo 16384, as in Redis Cluster: channel `C`
is routed by `{C}`, user `U` by `{U}` (layout.py), and a slot map says which shard serves
each slot. The Redis Cluster broker (cluster.py) reads its map from the cluster and follows
it; the shards broker (shards.py) splits the slots evenly over a fixed list of servers.

Each shard keeps everything `RedisBroker` guarantees: its own publish queue (publishes to
channels on one shard keep their call order), subscription connection, reconnection and
health. This module keeps what this process subscribed (channels, users, listened pub/sub
channels), so that a subclass can move them to another shard when the map changes.

Not guaranteed: an order between publishes to channels on different shards.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.crc import key_slot

from ...errors import InvalidState
from ...message import Data, Position
from ...presence import PresenceSnapshot
from ..base import (
    DeliverCallback,
    DirectBroker,
    DirectCallback,
    DirectDeliverCallback,
    History,
    HistoryPolicy,
    PresenceCallback,
    PublishCallback,
    ResubscribedCallback,
)
from .broker import RedisBroker
from .layout import Keys
from .subscriber import ListenCallback

__all__ = ["ShardMaker", "ShardedBroker", "slot_of"]

log = logging.getLogger("pushwire.broker.redis")

#: Makes the broker of one shard from its `redis://host:port/db` URL.
ShardMaker = Callable[[str], RedisBroker]


def slot_of(name: str) -> int:
    """The hash slot of a key or pub/sub channel name (Redis Cluster's: CRC16 of its hash
    tag, modulo 16384)."""
    return int(key_slot(name.encode("utf-8", "surrogatepass")))


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class ShardedBroker:
    """Routes every call to the shard of its channel or user (see the module).

    Subclasses start the shards (`_install`) and may move what is subscribed from one shard
    to another (`_moving`, `_generation`).

    Args:
        keys: the names in Redis (the shards' prefix).
        what: the broker's name in errors and logs.
    """

    def __init__(self, keys: Keys, what: str) -> None:
        self.keys = keys
        self._what = what
        self.on_resubscribed: ResubscribedCallback | None = None
        self._state = State.NEW
        self._shards: list[RedisBroker] = []
        self._slots: tuple[int, ...] = ()
        self._deliver: DeliverCallback | None = None
        self._deliver_presence: PresenceCallback | None = None
        self._deliver_direct: DirectDeliverCallback | None = None
        self._policy: HistoryPolicy | None = None
        #: What this process receives (to move it when a shard's slots move).
        self._channels: set[str] = set()
        self._users: set[str] = set()
        self._listeners: dict[str, ListenCallback] = {}
        #: Added to the shards' continuity: grows whenever subscriptions moved between
        #: shards or a shard was retired, so that the sum never comes back to a value seen.
        self._generation = 0
        #: Subscriptions are being moved: some may be missing messages meanwhile.
        self._moving = False
        #: Health counters of retired shards, kept in the totals.
        self._retired: dict[str, float] = {}

    @property
    def shards(self) -> list[RedisBroker]:
        """The shards' brokers, once started."""
        return list(self._shards)

    def shard(self, name: str) -> RedisBroker:
        """The broker of the shard holding the key or pub/sub channel `name`.

        Raises:
            InvalidState: the broker is not running.
        """
        if self._state is not State.RUNNING:
            raise InvalidState(f"{self._what} is {self._state.value}")
        return self._shards[self._slots[slot_of(name)]]

    def _channel(self, channel: str) -> RedisBroker:
        return self.shard(self.keys.topic(channel))

    def _user(self, user: str) -> RedisBroker:
        return self.shard(self.keys.inbox(user)[0])

    @property
    def redis(self) -> Redis:
        """The command connections of the shard holding the nodes' keys (nodes.py).

        Raises:
            InvalidState: the broker is not running.
        """
        return self._listener(self.keys.node("")).redis

    def _listener(self, topic: str) -> RedisBroker:
        """The shard of a pub/sub channel listened to as is (by its slot)."""
        return self.shard(topic)

    # -- lifecycle --------------------------------------------------------------------------

    def attach(self, deliver: DeliverCallback) -> None:
        self._deliver = deliver
        for shard in self._shards:
            shard.attach(deliver)

    def attach_presence(self, deliver: PresenceCallback) -> None:
        self._deliver_presence = deliver
        for shard in self._shards:
            shard.attach_presence(deliver)

    def attach_direct(self, deliver: DirectDeliverCallback) -> None:
        self._deliver_direct = deliver
        for shard in self._shards:
            shard.attach_direct(deliver)

    def attach_resubscribed(self, callback: ResubscribedCallback) -> None:
        self.on_resubscribed = callback

    @property
    def continuity(self) -> int | None:
        """`Broker.continuity`: the sum of the shards' (each only grows, so the sum stays the
        same only while every one does) and of the moves so far; None while any shard may be
        missing messages, or subscriptions are being moved."""
        if self._state is not State.RUNNING or self._moving:
            return None
        total = self._generation
        for shard in self._shards:
            stamp = shard.continuity
            if stamp is None:
                return None
            total += stamp
        return total

    @property
    def direct(self) -> DirectBroker:
        """This broker: users' inboxes live on their shards."""
        return self

    @property
    def spans_processes(self) -> bool:
        return True

    def _prepare(self, shard: RedisBroker) -> RedisBroker:
        """Attach what was attached so far to a new shard."""
        if self._deliver is not None:
            shard.attach(self._deliver)
        if self._deliver_presence is not None:
            shard.attach_presence(self._deliver_presence)
        if self._deliver_direct is not None:
            shard.attach_direct(self._deliver_direct)
        if self._policy is not None:
            shard.set_history_policy(self._policy)
        shard.on_resubscribed = self._resubscribed
        return shard

    async def _start_all(self, shards: list[RedisBroker]) -> None:
        """Start `shards`; if any fails, close them all and raise its error."""
        results = await asyncio.gather(*(shard.start() for shard in shards), return_exceptions=True)
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            await asyncio.gather(*(shard.close() for shard in shards))
            raise failed[0]

    def _resubscribed(self, channels: frozenset[str]) -> None:
        callback = self.on_resubscribed
        if callback is not None:
            callback(channels)

    async def close(self) -> None:
        """Close every shard (each sends what is queued first, for up to its `timeout`)."""
        self._state = State.CLOSED
        shards, self._shards = self._shards, []
        await asyncio.gather(*(shard.close() for shard in shards))

    async def _retire(self, shards: list[RedisBroker]) -> None:
        """Close shards that serve no slot any more, their counters kept in the totals."""
        for shard in shards:
            self._generation += shard.losses + 1
            for name, value in shard.health_stats().items():
                if name not in ("up", "pending"):
                    self._retired[name] = self._retired.get(name, 0.0) + value
        await asyncio.gather(*(shard.close() for shard in shards))

    def health_stats(self) -> dict[str, float]:
        """`BrokerHealth`: `up` while every shard's connections work, the rest summed."""
        stats = [shard.health_stats() for shard in self._shards]
        names = ("reconnects", "round_trips", "round_trip_seconds", "pending")
        total = {name: self._retired.get(name, 0.0) for name in names}
        for each in stats:
            for name in names:
                total[name] += each[name]
        return {"up": min((each["up"] for each in stats), default=0.0), **total}

    # -- publishing and subscribing ---------------------------------------------------------

    def set_history_policy(self, policy: HistoryPolicy) -> None:
        self._policy = policy
        for shard in self._shards:
            shard.set_history_policy(policy)

    def publish(
        self,
        channel: str,
        data: Data,
        done: PublishCallback | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """`RedisBroker.publish` on the channel's shard."""
        if self._state is not State.RUNNING:
            self._refuse(done)
            return
        self._channel(channel).publish(channel, data, done, idempotency_key=idempotency_key)

    def send_direct(self, user: str, data: Data, done: DirectCallback | None = None) -> None:
        """`RedisBroker.send_direct` on the user's shard."""
        if self._state is not State.RUNNING:
            self._refuse(done)
            return
        self._user(user).send_direct(user, data, done)

    def _refuse(self, done: PublishCallback | DirectCallback | None) -> None:
        error = InvalidState(f"{self._what} is {self._state.value}")
        if done is not None:
            done(error)
        else:
            log.warning("publish dropped: %s", error)

    async def subscribe(self, channel: str) -> None:
        shard = self._channel(channel)
        self._channels.add(channel)
        await shard.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._state is State.RUNNING:
            await self._channel(channel).unsubscribe(channel)

    async def listen(self, topic: str, callback: ListenCallback) -> None:
        """`RedisBroker.listen` on the shard of `topic`."""
        shard = self._listener(topic)
        self._listeners[topic] = callback
        await shard.listen(topic, callback)

    async def unlisten(self, topic: str) -> None:
        self._listeners.pop(topic, None)
        if self._state is State.RUNNING:
            await self._listener(topic).unlisten(topic)

    async def listen_user(self, user: str) -> None:
        shard = self._user(user)
        self._users.add(user)
        await shard.listen_user(user)

    async def unlisten_user(self, user: str) -> None:
        self._users.discard(user)
        if self._state is State.RUNNING:
            await self._user(user).unlisten_user(user)

    # -- presence, positions and history ----------------------------------------------------

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        if self._state is State.RUNNING:
            self._channel(channel).presence_join(channel, member, entry)

    def presence_leave(self, channel: str, member: str) -> None:
        if self._state is State.RUNNING:
            self._channel(channel).presence_leave(channel, member)

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        return await self._channel(channel).presence(channel, limit)

    async def position(self, channel: str) -> Position:
        return await self._channel(channel).position(channel)

    async def history(self, channel: str, since: Position) -> History:
        return await self._channel(channel).history(channel, since)

    async def inbox_position(self, user: str) -> Position:
        return await self._user(user).inbox_position(user)

    async def inbox_history(self, user: str, since: Position) -> History:
        return await self._user(user).inbox_history(user, since)
