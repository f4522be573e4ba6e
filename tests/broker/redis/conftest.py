"""Fixtures of the Redis broker tests: started brokers on `redis_server` (tests/conftest.py),
closed at the end of the test; a plain client to look into Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.redis_cluster_helpers import ClusterBrokers, RedisCluster, ShardsBrokers
from tests.redis_helpers import Maker, Node, RedisBrokers, RedisServer


@pytest.fixture
async def redis_brokers(redis_server: RedisServer) -> AsyncIterator[RedisBrokers]:
    """Makes started `RedisBroker`s on `redis_server`; all are closed at the end of the test."""
    brokers = RedisBrokers(redis_server.url)
    yield brokers
    await brokers.close_all()


@pytest.fixture
def nodes(redis_brokers: RedisBrokers) -> Maker[Node]:
    """Make started nodes on `redis_server`; all are closed at the end."""
    return redis_brokers.maker(Node, timeout=2.0)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of `redis_server`, to look at what the brokers did."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_brokers(redis_cluster: RedisCluster) -> AsyncIterator[ClusterBrokers]:
    """Makes started `RedisClusterBroker`s on `redis_cluster`; all closed at the end."""
    brokers = ClusterBrokers(redis_cluster.url)
    yield brokers
    await brokers.close_all()


@pytest.fixture
async def shards_brokers(redis_shards: list[RedisServer]) -> AsyncIterator[ShardsBrokers]:
    """Makes started `RedisShardsBroker`s on `redis_shards`; all closed at the end."""
    url = "redis+shards://" + ",".join(f"127.0.0.1:{server.port}" for server in redis_shards)
    brokers = ShardsBrokers(url)
    yield brokers
    await brokers.close_all()
