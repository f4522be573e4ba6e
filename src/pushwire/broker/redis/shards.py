"""`RedisShardsBroker`: channels and users spread over several independent Redis servers.

For a deployment without Redis Cluster: `redis+shards://[user:password@]h1:p1,h2:p2,…[/db]`
(`rediss+shards://` for TLS) names N ordinary Redis servers, the shards. Each is served by its
own `RedisBroker`, with everything it guarantees, and holds whole channels and users: a
channel `C` lives on the shard of the hash slot of `{C}` (CRC16 modulo 16384, as in Redis
Cluster), a user `U` on the shard of `{U}`, slot `s` on shard `s * N // 16384` (the slots
split into N equal ranges, in the order of the URL). Every node must be given the same list
in the same order. The nodes' liveness keys and request channels live on the first shard.

Guaranteed, per channel and per user, as on one Redis (docs/delivery.md): the same (epoch,
offset) on every node, delivery in offset order, history and idempotent publishes, presence,
direct messages. A shard restarted without persistence gives its channels and users new
epochs and their subscribers a gap; the other shards go on serving meanwhile.

Not guaranteed:

- An order between publishes to channels on different shards.
- Changing the list: with another count (or order) of shards, about half of the slots map
  elsewhere (`s * N // 16384` moves), and the channels and users there start on their new
  shard with a new epoch: their subscribers get a gap, their history and idempotency keys
  stay behind on the old shard (they expire there). Change it only as you would restart a
  Redis without persistence, on every node at once; or move to a Redis Cluster, which moves
  slots with their keys (cluster.py). One shard is the same names as `redis://`: going from
  one Redis to shards keeps the channels that map to the first shard.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import urlsplit

from ...errors import ConfigError, InvalidState
from .broker import RedisBroker
from .layout import Keys
from .sharded import ShardedBroker, ShardMaker, State
from .topology import SLOTS, parse_address

__all__ = ["SHARD_SCHEMES", "RedisShardsBroker", "is_shards_url", "parse_shards_url"]

log = logging.getLogger("pushwire.broker.redis")

#: The URL schemes of a list of Redis shards: plain and TLS.
SHARD_SCHEMES: Final = {"redis+shards": "redis", "rediss+shards": "rediss"}


def is_shards_url(url: str) -> bool:
    """Whether `url` names Redis shards (`redis+shards://…`)."""
    return url.partition("://")[0] in SHARD_SCHEMES


def parse_shards_url(url: str) -> list[str]:
    """The `redis://` URL of each shard of
    `redis+shards://[user:password@]host[:port][,host[:port]…][/db][?options]`, in order.

    Raises:
        ConfigError: not such a URL, or a shard named twice, with the reason.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in SHARD_SCHEMES:
        raise ConfigError(f"a redis shards URL starts with redis+shards://, not {url!r}")
    parts = urlsplit(f"redis://{rest}")
    auth, _, hosts = parts.netloc.rpartition("@")
    path = parts.path if parts.path not in ("", "/") else "/0"
    if not path[1:].isdigit():
        raise ConfigError(f"bad database in the redis shards URL: {parts.path!r}")
    addresses = [parse_address(address, "redis shards") for address in hosts.split(",")]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"a redis shard is named twice in {url!r}")
    query = f"?{parts.query}" if parts.query else ""
    login = f"{auth}@" if auth else ""
    return [
        f"{SHARD_SCHEMES[scheme]}://{login}{f'[{host}]' if ':' in host else host}:{port}{path}"
        f"{query}"
        for host, port in addresses
    ]


class RedisShardsBroker(ShardedBroker):
    """Fan-out and history across processes through N independent Redis servers (see the
    module).

    Args:
        url: `redis+shards://[user:password@]host:port,host:port[,…][/db]`.
        make_shard: makes the `RedisBroker` of one shard from its URL, with the options
            every shard gets (history bounds, timeouts…); by default `RedisBroker(url)`.
        prefix: put before every key and pub/sub channel name: the shards' prefix.
    """

    def __init__(
        self, url: str, *, make_shard: ShardMaker | None = None, prefix: str = "pushwire:"
    ) -> None:
        super().__init__(Keys(prefix), "redis shards broker")
        self.url = url
        self.urls = parse_shards_url(url)
        self._make_shard = make_shard or _default_shard(prefix)

    async def start(self) -> None:
        """Start one broker per shard.

        Raises:
            Unavailable: a shard could not be reached (nothing is left running).
            InvalidState: the broker was started before.
        """
        if self._state is not State.NEW:
            raise InvalidState(f"redis shards broker is {self._state.value}")
        self._state = State.CLOSED  # until every shard runs
        shards = []
        for url in self.urls:
            shard = self._make_shard(url)
            if shard.keys != self.keys:
                raise ConfigError("make_shard must give RedisBroker(url) brokers of one prefix")
            shards.append(self._prepare(shard))
        await self._start_all(shards)
        count = len(shards)
        self._shards, self._slots = shards, tuple(slot * count // SLOTS for slot in range(SLOTS))
        self._state = State.RUNNING
        where = ", ".join(f"{urlsplit(url).hostname}:{urlsplit(url).port}" for url in self.urls)
        log.info("redis shards: %d (%s)", count, where)

    def _listener(self, topic: str) -> RedisBroker:
        # The nodes' keys and request channels (nodes.py), all on the first shard.
        if self._state is not State.RUNNING:
            raise InvalidState(f"redis shards broker is {self._state.value}")
        return self._shards[0]


def _default_shard(prefix: str) -> ShardMaker:
    def make(url: str) -> RedisBroker:
        return RedisBroker(url, prefix=prefix)

    return make
