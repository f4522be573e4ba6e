"""The Redis broker a `Config` names: one Redis (`redis://…`), a Redis Cluster
(`redis+cluster://…`, one `RedisBroker` per master) or independent Redis shards
(`redis+shards://…`, one `RedisBroker` per server), with the config's bounds and timeouts."""

from __future__ import annotations

import functools

from ...config import Config
from .broker import RedisBroker
from .cluster import RedisClusterBroker
from .shards import RedisShardsBroker, is_shards_url
from .topology import is_cluster_url

__all__ = ["redis_broker"]


def redis_broker(config: Config) -> RedisBroker | RedisClusterBroker | RedisShardsBroker:
    """The broker of `config.broker`, not started.

    Raises:
        ConfigError: a malformed `redis+cluster://` or `redis+shards://` URL.
    """
    if is_shards_url(config.broker):
        return RedisShardsBroker(config.broker, make_shard=functools.partial(_broker, config))
    if is_cluster_url(config.broker):
        shard = functools.partial(_broker, config, sharded=True)
        return RedisClusterBroker(
            config.broker,
            make_shard=shard,
            timeout=config.broker_timeout,
            refresh_interval=config.broker_cluster_refresh,
        )
    return _broker(config, config.broker)


def _broker(config: Config, url: str, *, sharded: bool = False) -> RedisBroker:
    return RedisBroker(
        url,
        sharded=sharded,
        history_size=config.history_size,
        history_ttl=config.history_ttl,
        history_bytes=config.history_bytes,
        idempotency_ttl=config.idempotency_ttl,
        max_pending=config.broker_max_pending,
        timeout=config.broker_timeout,
        reconnect_min=config.broker_reconnect_min,
        reconnect_max=config.broker_reconnect_max,
        presence_ttl=config.presence_ttl,
        presence_batch=config.presence_batch,
        inbox_size=config.inbox_size,
        inbox_bytes=config.inbox_bytes,
        inbox_ttl=config.inbox_ttl,
    )
