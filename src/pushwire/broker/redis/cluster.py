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
- Publishes while a slot moves: a master that no longer serves the slot answers MOVED (ASK
  while its keys are being migrated), and those publishes fail with `Unavailable` (503,
  retryable; with an idempotency key a retry never publishes twice) until the map is read
  again (below).

Following the cluster: the slot map is read again when a master answers MOVED or ASK, when
a connection to a master is lost, and every `refresh_interval` seconds while a master stays
unreachable (its replica may be promoted meanwhile); never more often than once per
`refresh_interval`. When the map changed, a broker is started for each new master, and the
channels, users and listened pub/sub channels whose slot has a new master are moved to it:
unsubscribed from the old shard, subscribed on the new one, their presence members joined
there, and, once the new master confirmed the subscription and before any message of it is
passed on, named to `on_resubscribed`, exactly as after a lost connection. The hub then reads
their history from the new master: when the keys moved with the slot (resharding with
MIGRATE, a promoted replica) nothing is lost, offsets go on in the same epoch; when they did
not, the gap is told with its exact range. A master that serves no slot any more is closed.

Not guaranteed either: a master lost before its replica had its last writes (replication is
asynchronous). The promoted replica gives their offsets again, in the same epoch, to the next
messages, and a node that received the lost ones skips the new ones at those offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math

from ...errors import ConfigError, InvalidState, PushwireError
from .broker import RedisBroker
from .layout import Keys
from .sharded import ShardedBroker, ShardMaker, State, slot_of
from .topology import discover, parse_url

__all__ = ["RedisClusterBroker"]

log = logging.getLogger("pushwire.broker.redis")

Address = tuple[str, int]


class RedisClusterBroker(ShardedBroker):
    """Fan-out and history across processes through the masters of a Redis Cluster.

    Args:
        url: `redis+cluster://[user:password@]host:port[,host:port…]`, one or more of its
            nodes (topology.py); `rediss+cluster://` for TLS.
        make_shard: makes the `RedisBroker` of one master from its URL, with
            `sharded=True` and the options every shard gets (history bounds, timeouts…);
            by default `RedisBroker(url, sharded=True)`.
        prefix: put before every key and pub/sub channel name: the shards' prefix (no
            braces: they would change the hash tags).
        timeout: seconds to wait for a node's answers when reading the slot map.
        refresh_interval: seconds between two reads of the slot map at least (see the
            module); while a master is unreachable it is read this often.
    """

    def __init__(
        self,
        url: str,
        *,
        make_shard: ShardMaker | None = None,
        prefix: str = "pushwire:",
        timeout: float = 5.0,
        refresh_interval: float = 1.0,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"a redis cluster prefix has no braces, not {prefix!r}")
        if refresh_interval <= 0:
            raise ValueError(f"refresh_interval must be > 0, not {refresh_interval}")
        super().__init__(Keys(prefix, sharded=True), "redis cluster broker")
        self.url = url
        self.seed = parse_url(url)
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self._make_shard = make_shard or _default_shard(prefix)
        self._masters: tuple[Address, ...] = ()
        #: Reads of the slot map since start, and those that found it changed.
        self.reads = 0
        self.changes = 0
        self._wanted = asyncio.Event()
        self._last_read = -math.inf
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the slot map from a seed node, then start one broker per master.

        Raises:
            Unavailable: no seed node answered, the cluster is not ready, or a master
                could not be reached (nothing is left running).
            ConfigError: the server is not a Redis Cluster of Redis 7 or later, or leaves
                slots without a master.
            InvalidState: the broker was started before.
        """
        if self._state is not State.NEW:
            raise InvalidState(f"redis cluster broker is {self._state.value}")
        self._state = State.CLOSED  # until every shard runs
        topology = await discover(self.seed, self.timeout)
        shards = [self._new_shard(address) for address in topology.masters]
        await self._start_all(shards)
        self._shards, self._slots, self._masters = shards, topology.slots, topology.masters
        self._state = State.RUNNING
        self._last_read = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._follow(), name="pushwire redis cluster map")
        log.info("redis cluster: %d masters (%s)", len(shards), _listed(topology.masters))

    def _new_shard(self, address: Address) -> RedisBroker:
        shard = self._make_shard(self.seed.url(*address))
        if not shard.keys.sharded or shard.prefix != self.keys.prefix:
            raise ConfigError("make_shard must give RedisBroker(url, sharded=True) brokers")
        shard.watch_topology(self._wanted.set)
        return self._prepare(shard)

    async def close(self) -> None:
        """Stop following the cluster, then close every shard."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().close()

    # -- following the cluster --------------------------------------------------------------

    def _closed(self) -> bool:
        return self._state is State.CLOSED

    async def _follow(self) -> None:
        """Read the slot map when told to, at most once per `refresh_interval`, and again
        after each interval while a master is unreachable."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wanted.wait()
            delay = self._last_read + self.refresh_interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._wanted.clear()
            self._last_read = loop.time()
            try:
                await self._refresh()
            except PushwireError as exc:
                log.debug("redis cluster slot map not read: %s", exc)
            if any(not shard.health_stats()["up"] for shard in self._shards):
                self._wanted.set()

    async def refresh(self) -> bool:
        """Read the slot map now and follow it (see the module); whether it had changed.

        Raises:
            Unavailable: no node answered, or the cluster is not ready.
            ConfigError: slots without a master.
        """
        self._last_read = asyncio.get_running_loop().time()
        return await self._refresh()

    async def _refresh(self) -> bool:
        addresses = tuple(dict.fromkeys((*self._masters, *self.seed.addresses)))
        self.reads += 1
        topology = await discover(dataclasses.replace(self.seed, addresses=addresses), self.timeout)
        if self._state is not State.RUNNING or (
            topology.masters == self._masters and topology.slots == self._slots
        ):
            return False
        kept = dict(zip(self._masters, self._shards, strict=True))
        added = {a: self._new_shard(a) for a in topology.masters if a not in kept}
        await self._start_all(list(added.values()))
        if self._closed():  # closed meanwhile
            await asyncio.gather(*(shard.close() for shard in added.values()))
            return False
        retired = [shard for address, shard in kept.items() if address not in topology.masters]
        before = self._shards, self._slots
        self._shards = [kept.get(address) or added[address] for address in topology.masters]
        self._slots, self._masters = topology.slots, topology.masters
        self._generation += 1
        self._moving = True
        self.changes += 1
        try:
            moved = await self._move(*before)
        finally:
            self._moving = False
            await self._retire(retired)
        log.warning(
            "redis cluster: slot map changed, %d masters (%s); %d subscriptions moved",
            len(self._shards),
            _listed(self._masters),
            moved,
        )
        return True

    async def _move(self, shards: list[RedisBroker], slots: tuple[int, ...]) -> int:
        """Move what this process receives from its shard under the map (`shards`, `slots`)
        to its shard now; how many subscriptions moved."""

        def was(name: str) -> RedisBroker:
            return shards[slots[slot_of(name)]]

        moves = []
        for channel in self._channels:
            old, new = was(self.keys.topic(channel)), self._channel(channel)
            if old is not new:
                moves.append(self._move_channel(channel, old, new))
        for user in self._users:
            old, new = was(self.keys.inbox(user)[0]), self._user(user)
            if old is not new:
                moves.append(self._move_user(user, old, new))
        for topic in self._listeners:
            old, new = was(topic), self._listener(topic)
            if old is not new:
                moves.append(self._move_listener(topic, old, new))
        await asyncio.gather(*moves)
        return len(moves)

    async def _move_channel(self, channel: str, old: RedisBroker, new: RedisBroker) -> None:
        members = old.take_presence(channel)
        await old.unsubscribe(channel)
        await new.subscribe(channel, recover=True)
        if channel not in self._channels:  # unsubscribed meanwhile
            await new.unsubscribe(channel)
            return
        for member, entry in members.items():
            new.presence_join(channel, member, entry)

    async def _move_user(self, user: str, old: RedisBroker, new: RedisBroker) -> None:
        await old.unlisten_user(user)
        await new.listen_user(user, recover=True)
        if user not in self._users:
            await new.unlisten_user(user)

    async def _move_listener(self, topic: str, old: RedisBroker, new: RedisBroker) -> None:
        await old.unlisten(topic)
        callback = self._listeners.get(topic)
        if callback is not None:
            await new.listen(topic, callback, recover=True)


def _listed(masters: tuple[Address, ...]) -> str:
    return ", ".join(f"{host}:{port}" for host, port in masters)


def _default_shard(prefix: str) -> ShardMaker:
    def make(url: str) -> RedisBroker:
        return RedisBroker(url, prefix=prefix, sharded=True)

    return make
