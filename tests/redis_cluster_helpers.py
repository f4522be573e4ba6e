"""Testing against a real Redis Cluster: three masters on loopback ports (no replicas), each a
`redis-server --cluster-enabled yes` in its own directory, joined by `redis-cli --cluster
create`, stopped by PID. A master's `stop` then `start` is a restart in place without
persistence: it keeps its slots (its nodes.conf) and loses every key. The fixture is
`redis_cluster` (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pushwire.broker.redis import RedisBroker, RedisClusterBroker, RedisShardsBroker
from pushwire.broker.redis.sharded import ShardedBroker
from pushwire.message import Message
from tests.redis_helpers import (
    RECONNECT_MAX,
    RECONNECT_MIN,
    REDIS_SERVER,
    WAIT,
    RedisServer,
    Watched,
)

REDIS_CLI = shutil.which("redis-cli")
#: Milliseconds without an answer after which a cluster node takes another for failing.
NODE_TIMEOUT = 5000


def _free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (10000 above it) is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


class ClusterNode(RedisServer):
    """One master of the cluster: a `RedisServer` in cluster mode."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.port = _free_cluster_port()
        self.arguments = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(directory / "nodes.conf"),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT),
            # A master that is down must not stop the others serving their slots.
            "--cluster-require-full-coverage",
            "no",
        )

    def cluster_state(self) -> str:
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return "unreachable"
        finally:
            client.close()
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return "unknown"


class RedisCluster:
    """Three masters sharing the 16384 slots."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes = []
        self.replicas: list[ClusterNode] = []
        for index in range(masters):
            folder = directory / f"node{index}"
            folder.mkdir()
            self.nodes.append(ClusterNode(folder))

    @property
    def url(self) -> str:
        """The cluster URL pushwire takes: every master as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        assert REDIS_CLI is not None
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every master says `cluster_state:ok`."""
        deadline = time.monotonic() + timeout
        while not all(node.cluster_state() == "ok" for node in self.nodes):
            if time.monotonic() > deadline:
                states = [node.cluster_state() for node in self.nodes]
                raise RuntimeError(f"redis cluster not ok within {timeout} s: {states}")
            time.sleep(0.05)

    def master_of(self, name: str) -> ClusterNode:
        """The master holding the key or shard channel `name`."""
        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_timeout=2)
            try:
                slot = client.execute_command("CLUSTER", "KEYSLOT", name)  # type: ignore[no-untyped-call]
                ranges = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
            finally:
                client.close()
            for start, end, master, *_ in ranges:
                if start <= int(slot) <= end:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise LookupError(name)

    def migrate(self, name: str, target: ClusterNode, *, keys: bool = True) -> None:
        """Reshard: move the slot of the key or shard channel `name`, keys included, to
        `target`, as `redis-cli --cluster reshard` does (IMPORTING on the target, MIGRATING
        on the source, MIGRATE of its keys, then SETSLOT NODE on every master). Without
        `keys` its keys are deleted instead: the slot moves empty."""
        source = self.master_of(name)
        assert source is not target
        with _client(source) as old, _client(target) as new:
            slot = int(old.execute_command("CLUSTER", "KEYSLOT", name))  # type: ignore[no-untyped-call]
            source_id = _text(old.execute_command("CLUSTER", "MYID"))  # type: ignore[no-untyped-call]
            target_id = _text(new.execute_command("CLUSTER", "MYID"))  # type: ignore[no-untyped-call]
            new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)  # type: ignore[no-untyped-call]
            old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)  # type: ignore[no-untyped-call]
            while found := old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):  # type: ignore[no-untyped-call]
                if not keys:
                    old.delete(*found)
                    continue
                old.execute_command(  # type: ignore[no-untyped-call]
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *found
                )
        for node in (target, source, *self.nodes):
            with _client(node) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]

    def add_replica(
        self, master: ClusterNode, directory: Path, timeout: float = 30.0
    ) -> ClusterNode:
        """Start a replica of `master` in `directory`, joined to the cluster; returns once it
        is in sync (stopped with the cluster)."""
        replica = ClusterNode(directory)
        self.replicas.append(replica)
        replica.start()
        deadline = time.monotonic() + timeout
        with _client(master) as primary, _client(replica) as client:
            master_id = _text(primary.execute_command("CLUSTER", "MYID"))  # type: ignore[no-untyped-call]
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", master.port)  # type: ignore[no-untyped-call]
            while True:
                try:  # refused until the replica knows the master (gossip)
                    client.execute_command("CLUSTER", "REPLICATE", master_id)  # type: ignore[no-untyped-call]
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica of {master.port} not in sync within {timeout} s")
                time.sleep(0.05)
        return replica

    def fail_over(self, replica: ClusterNode, timeout: float = 30.0) -> None:
        """`CLUSTER FAILOVER` on `replica` (its master agrees, after the replica caught up):
        returns once it is the master, known as such by every master."""
        with _client(replica) as client:
            client.execute_command("CLUSTER", "FAILOVER")  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + timeout
        while any(replica.port not in {int(r[2][1]) for r in _slots(node)} for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"failover to {replica.port} not done within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in (*self.nodes, *self.replicas):
            node.stop()


@contextlib.contextmanager
def _client(node: ClusterNode) -> Iterator[redis.Redis]:
    client = redis.Redis(port=node.port, socket_timeout=10)
    try:
        yield client
    finally:
        client.close()


def _slots(node: ClusterNode) -> list[list[Any]]:
    with _client(node) as client:
        try:
            ranges: list[list[Any]] = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return []
    return ranges


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[RedisCluster]:
    """A started three-master `RedisCluster`, stopped on the way out (skips the test when
    redis-server or redis-cli is not installed)."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are needed (Debian: apt-get install redis-server)")
    cluster = RedisCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class Recorder(Watched):
    """One process's cluster (or shards) broker and what it delivered (attached before it
    starts)."""

    def __init__(self, broker: ShardedBroker) -> None:
        super().__init__()
        self.broker = broker
        self.received: list[Message] = []
        self.direct: list[tuple[str, Message]] = []
        self.resubscribed: list[frozenset[str]] = []
        broker.attach(self._deliver)
        broker.attach_direct(self._deliver_direct)
        broker.attach_resubscribed(self._resubscribed)

    def _deliver(self, message: Message) -> None:
        self.received.append(message)
        self.changed()

    def _deliver_direct(self, user: str, message: Message) -> None:
        self.direct.append((user, message))
        self.changed()

    def _resubscribed(self, channels: frozenset[str]) -> None:
        self.resubscribed.append(channels)
        self.changed()

    def of(self, channel: str) -> list[Message]:
        return [message for message in self.received if message.channel == channel]


class ClusterBrokers:
    """Makes started `RedisClusterBroker`s on one cluster, each in a `Recorder`, and closes
    every one at the end; their shards reconnect quickly."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisClusterBroker] = []

    async def __call__(self) -> Recorder:
        def shard(url: str) -> RedisBroker:
            return RedisBroker(
                url,
                sharded=True,
                timeout=2.0,
                reconnect_min=RECONNECT_MIN,
                reconnect_max=RECONNECT_MAX,
            )

        broker = RedisClusterBroker(self.url, make_shard=shard, refresh_interval=0.2)
        self.made.append(broker)
        recorder = Recorder(broker)
        await broker.start()
        return recorder

    async def close_all(self) -> None:
        for broker in self.made:
            async with asyncio.timeout(WAIT):
                await broker.close()


class ShardsBrokers:
    """Makes started `RedisShardsBroker`s on a list of Redis servers, each in a `Recorder`,
    and closes every one at the end; their shards reconnect quickly."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisShardsBroker] = []

    async def __call__(self) -> Recorder:
        def shard(url: str) -> RedisBroker:
            return RedisBroker(
                url, timeout=2.0, reconnect_min=RECONNECT_MIN, reconnect_max=RECONNECT_MAX
            )

        broker = RedisShardsBroker(self.url, make_shard=shard)
        self.made.append(broker)
        recorder = Recorder(broker)
        await broker.start()
        return recorder

    async def close_all(self) -> None:
        for broker in self.made:
            async with asyncio.timeout(WAIT):
                await broker.close()


def spread(broker: ShardedBroker, count: int, prefix: str = "room") -> list[str]:
    """`count` channel names on as many different masters as there are (round robin)."""
    masters = broker.shards
    by_master: dict[int, list[str]] = {id(shard): [] for shard in masters}
    index = 0
    while min(len(names) for names in by_master.values()) * len(masters) < count:
        name = f"{prefix}{index}"
        by_master[id(broker.shard(broker.keys.topic(name)))].append(name)
        index += 1
    columns = list(by_master.values())
    return [columns[i % len(columns)][i // len(columns)] for i in range(count)]


def spread_users(broker: ShardedBroker, count: int) -> list[str]:
    """`count` user names on different masters, like `spread`."""
    masters = broker.shards
    seen: dict[int, str] = {}
    index = 0
    while len(seen) < min(count, len(masters)):
        name = f"user{index}"
        seen.setdefault(id(broker.shard(broker.keys.inbox(name)[0])), name)
        index += 1
    return list(seen.values())[:count]
