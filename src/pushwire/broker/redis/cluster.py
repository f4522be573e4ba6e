"""`RedisClusterBroker`: channels and users spread over the masters of a Redis Cluster.

Each master is a shard served by its own `RedisBroker` (made with `sharded=True`): its own
connections, publish queue, subscription connection, reconnection and health. A channel
lives on the master of its hash slot, and everything of it with it: its offsets, epoch and
history, its idempotency keys, its presence and its pub/sub (sharded: SPUBLISH in the
publish script, SSUBSCRIBE on the shard's subscription connection), all names sharing its
hash tag `{C}` (layout.py). A user's inbox and pub/sub live on the master of `{U}`. The nodes'
liveness keys and request channels share one tag, `{nodes}`: node-to-node requests (session
hand-overs, rare) go through one shard.

Why not redis-py's `RedisCluster`: its pub/sub (`ClusterPubSub`) holds one node's connection,
and its retries and reconnections are its own (a publish must never run twice, an outage must
be reported once and recovered from history); a shard here keeps everything `RedisBroker`
guarantees (one ordered publish queue, a confirmed subscription connection, outages reported
and recovered), per master.

Guaranteed, per channel and per user, exactly as with one Redis (docs/delivery.md): the
same (epoch, offset) on every node, offsets dense within an epoch, delivery in offset order;
a master restarted without persistence gives its channels a new epoch and their subscribers
the same gap as one Redis would; a lost connection to one master is reported, retried and
recovered from history like one Redis's (the other masters go on serving meanwhile).
Publishes from one process to channels on one master keep their call order.

Not guaranteed:

- An order between publishes to channels on different masters (each shard has its own queue).
- Following the cluster when it changes: the slot map is read once, at start. A slot moved
  to another master (resharding) or a replica promoted to master is not followed: commands
  for it fail (`Unavailable`, MOVED) and its subscriptions keep retrying, until pushwire is
  restarted. A master restarted in place (same address) is fine.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.crc import key_slot

from ...errors import ConfigError, InvalidState
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
from .topology import Topology, discover, parse_url

__all__ = ["RedisClusterBroker"]

log = logging.getLogger("pushwire.broker.redis")

#: Makes the broker of one master from its `redis://host:port/0` URL.
ShardMaker = Callable[[str], RedisBroker]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class RedisClusterBroker:
    """Fan-out and history across processes through the masters of a Redis Cluster.

    Args:
        url: `redis+cluster://[user:password@]host:port[,host:port…]`, one or more of its
            nodes (topology.py); `rediss+cluster://` for TLS.
        make_shard: makes the `RedisBroker` of one master from its URL, with
            `sharded=True` and the options every shard gets (history bounds, timeouts…);
            by default `RedisBroker(url, sharded=True)`.
        prefix: put before every key and pub/sub channel name: the shards' prefix (no
            braces: they would change the hash tags).
        timeout: seconds to wait for a seed node's answers at start.
    """

    def __init__(
        self,
        url: str,
        *,
        make_shard: ShardMaker | None = None,
        prefix: str = "pushwire:",
        timeout: float = 5.0,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"a redis cluster prefix has no braces, not {prefix!r}")
        self.url = url
        self.seed = parse_url(url)
        self.timeout = timeout
        self.keys = Keys(prefix, sharded=True)
        self._make_shard = make_shard or _default_shard(prefix)
        self.on_resubscribed: ResubscribedCallback | None = None
        self._state = _State.NEW
        self._shards: list[RedisBroker] = []
        self._slots: tuple[int, ...] = ()
        self._deliver: DeliverCallback | None = None
        self._deliver_presence: PresenceCallback | None = None
        self._deliver_direct: DirectDeliverCallback | None = None
        self._policy: HistoryPolicy | None = None

    @property
    def shards(self) -> list[RedisBroker]:
        """The masters' brokers, once started (in the order the cluster listed them)."""
        return list(self._shards)

    def shard(self, name: str) -> RedisBroker:
        """The broker of the master holding the key or pub/sub channel `name`.

        Raises:
            InvalidState: the broker is not running.
        """
        if self._state is not _State.RUNNING:
            raise InvalidState(f"redis cluster broker is {self._state.value}")
        return self._shards[self._slots[key_slot(name.encode("utf-8", "surrogatepass"))]]

    def _channel(self, channel: str) -> RedisBroker:
        return self.shard(self.keys.topic(channel))

    def _user(self, user: str) -> RedisBroker:
        return self.shard(self.keys.user(user))

    @property
    def redis(self) -> Redis:
        """The command connections of the master holding the nodes' keys (nodes.py).

        Raises:
            InvalidState: the broker is not running.
        """
        return self.shard(self.keys.node("")).redis

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
        same only while every one does); None while any shard may be missing messages."""
        total = 0
        for shard in self._shards:
            stamp = shard.continuity
            if stamp is None:
                return None
            total += stamp
        return total if self._state is _State.RUNNING else None

    @property
    def direct(self) -> DirectBroker:
        """This broker: users' inboxes live on their masters."""
        return self

    @property
    def spans_processes(self) -> bool:
        return True

    async def start(self) -> None:
        """Read the slot map from a seed node, then start one broker per master.

        Raises:
            Unavailable: no seed node answered, the cluster is not ready, or a master
                could not be reached (nothing is left running).
            ConfigError: the server is not a Redis Cluster of Redis 7 or later, or leaves
                slots without a master.
            InvalidState: the broker was started before.
        """
        if self._state is not _State.NEW:
            raise InvalidState(f"redis cluster broker is {self._state.value}")
        self._state = _State.CLOSED  # until every shard runs
        topology = await discover(self.seed, self.timeout)
        shards = self._made(topology)
        results = await asyncio.gather(*(shard.start() for shard in shards), return_exceptions=True)
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            await asyncio.gather(*(shard.close() for shard in shards))
            raise failed[0]
        self._shards, self._slots = shards, topology.slots
        self._state = _State.RUNNING
        log.info(
            "redis cluster: %d masters (%s)",
            len(shards),
            ", ".join(f"{host}:{port}" for host, port in topology.masters),
        )

    def _made(self, topology: Topology) -> list[RedisBroker]:
        shards = [self._make_shard(self.seed.url(*address)) for address in topology.masters]
        for shard in shards:
            if not shard.keys.sharded or shard.prefix != self.keys.prefix:
                raise ConfigError("make_shard must give RedisBroker(url, sharded=True) brokers")
            if self._deliver is not None:
                shard.attach(self._deliver)
            if self._deliver_presence is not None:
                shard.attach_presence(self._deliver_presence)
            if self._deliver_direct is not None:
                shard.attach_direct(self._deliver_direct)
            if self._policy is not None:
                shard.set_history_policy(self._policy)
            shard.on_resubscribed = self._resubscribed
        return shards

    def _resubscribed(self, channels: frozenset[str]) -> None:
        callback = self.on_resubscribed
        if callback is not None:
            callback(channels)

    async def close(self) -> None:
        """Close every shard (each sends what is queued first, for up to its `timeout`)."""
        self._state = _State.CLOSED
        shards, self._shards = self._shards, []
        await asyncio.gather(*(shard.close() for shard in shards))

    def health_stats(self) -> dict[str, float]:
        """`BrokerHealth`: `up` while every master's connections work, the rest summed."""
        stats = [shard.health_stats() for shard in self._shards]
        if not stats:
            names = ("reconnects", "round_trips", "round_trip_seconds", "pending")
            return {"up": 0.0, **dict.fromkeys(names, 0.0)}
        total = {name: sum(each[name] for each in stats) for name in stats[0]}
        total["up"] = min(each["up"] for each in stats)
        return total

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
        """`RedisBroker.publish` on the channel's master."""
        if self._state is not _State.RUNNING:
            self._refuse(done)
            return
        self._channel(channel).publish(channel, data, done, idempotency_key=idempotency_key)

    def send_direct(self, user: str, data: Data, done: DirectCallback | None = None) -> None:
        """`RedisBroker.send_direct` on the user's master."""
        if self._state is not _State.RUNNING:
            self._refuse(done)
            return
        self._user(user).send_direct(user, data, done)

    def _refuse(self, done: PublishCallback | DirectCallback | None) -> None:
        error = InvalidState(f"redis cluster broker is {self._state.value}")
        if done is not None:
            done(error)
        else:
            log.warning("publish dropped: %s", error)

    async def subscribe(self, channel: str) -> None:
        await self._channel(channel).subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        if self._state is _State.RUNNING:
            await self._channel(channel).unsubscribe(channel)

    async def listen(self, topic: str, callback: ListenCallback) -> None:
        """`RedisBroker.listen` on the master of `topic`'s slot."""
        await self.shard(topic).listen(topic, callback)

    async def unlisten(self, topic: str) -> None:
        if self._state is _State.RUNNING:
            await self.shard(topic).unlisten(topic)

    async def listen_user(self, user: str) -> None:
        await self._user(user).listen_user(user)

    async def unlisten_user(self, user: str) -> None:
        if self._state is _State.RUNNING:
            await self._user(user).unlisten_user(user)

    # -- presence, positions and history ----------------------------------------------------

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        if self._state is _State.RUNNING:
            self._channel(channel).presence_join(channel, member, entry)

    def presence_leave(self, channel: str, member: str) -> None:
        if self._state is _State.RUNNING:
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


def _default_shard(prefix: str) -> ShardMaker:
    def make(url: str) -> RedisBroker:
        return RedisBroker(url, prefix=prefix, sharded=True)

    return make
