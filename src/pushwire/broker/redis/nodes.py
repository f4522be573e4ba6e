"""Nodes on one Redis: who is alive, and one pub/sub channel per node for requests to it.

The Redis half of session routing (`pushwire.routing` holds the rest, and knows no Redis).
Each node has a random id and, while it runs:

- a liveness key `pushwire:node:<id>` with a TTL of `node_ttl` seconds, refreshed every third
  of it: once the key is gone the node counts as dead (it was killed, or cut off from Redis
  for longer than `node_ttl`);
- a pub/sub channel `pushwire:node:<id>`, subscribed on the broker's subscription connection
  (`RedisBroker.listen`), where other nodes publish requests to it and answers to its own
  requests. A payload is opaque bytes here.

Sending checks the liveness key and publishes in one round trip, and tells apart a delivered
payload (someone subscribed received it), a live node that did not get it (key there, no
subscriber: its subscription is being restored) and a dead node (neither). A Redis restart
without persistence loses every key at once: a node that finds its own key gone, or that
could not reach Redis, takes no missing key for a death until Redis has kept its keys for a
whole `node_ttl` (every live node sets its key again within a third of it). Pub/sub does not
queue: whatever was published while a node's subscription was down is lost, and the
requester's timeout covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

from redis.exceptions import RedisError

from ...errors import Unavailable
from ..base import Delivery
from .broker import RedisBroker
from .health import CONNECTION_ERRORS
from .sharded import ShardedBroker

__all__ = ["RedisNodes", "new_node_id"]

log = logging.getLogger("pushwire.broker.nodes")


def new_node_id() -> str:
    """48 random bits as 12 hex digits: distinct among any realistic number of nodes."""
    return secrets.token_hex(6)


class RedisNodes:
    """This node's liveness key and request channel, and sending to other nodes.

    Args:
        broker: the node's Redis broker (its connections are reused); on a Redis Cluster,
            every node's key and channel are on the master of the slot of `{nodes}`.
        node_ttl: seconds the liveness key lives unless refreshed (every `node_ttl / 3`).
        node: this node's id (a new random one by default).
    """

    def __init__(
        self, broker: RedisBroker | ShardedBroker, node_ttl: float, node: str | None = None
    ) -> None:
        if node_ttl <= 0:
            raise ValueError(f"node_ttl must be > 0, not {node_ttl}")
        self.broker = broker
        self.node = node or new_node_id()
        self.node_ttl = node_ttl
        self._ttl_ms = max(1, round(node_ttl * 1000))
        self._task: asyncio.Task[None] | None = None
        # Since when this node has seen Redis keep its keys (None: Redis unreachable now). A
        # missing key means a dead node only once Redis has kept state for a whole node_ttl:
        # after a Redis restart every node needs up to node_ttl / 3 to set its key again.
        self._reliable_since: float | None = None

    def key(self, node: str) -> str:
        """The liveness key of `node`, which is also the name of its pub/sub channel."""
        return self.broker.keys.node(node)

    async def start(self, receive: Callable[[bytes], None]) -> None:
        """Listen on this node's channel, then announce the node alive (and keep it so).

        Raises:
            Unavailable: Redis cannot be reached.
        """
        await self.broker.listen(self.key(self.node), receive)
        try:
            await self._refresh()
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"redis unavailable: {exc}") from exc
        self._reliable_since = asyncio.get_running_loop().time() - self.node_ttl
        self._task = asyncio.create_task(self._keep_alive(), name="pushwire node liveness")

    async def close(self) -> None:
        """Stop refreshing and delete the liveness key: other nodes see this one gone now."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self.broker.redis.delete(self.key(self.node))
        except (RedisError, *CONNECTION_ERRORS) as exc:
            # One line, no traceback: down, or busy (a script over Redis's time limit); the
            # key expires within node_ttl.
            log.warning("could not delete the liveness key: %s", exc)

    async def _refresh(self) -> None:
        existed = await self.broker.redis.set(self.key(self.node), b"1", px=self._ttl_ms, get=True)
        if existed is None or self._reliable_since is None:
            self._restored()

    def _restored(self) -> None:
        """Redis is back, or lost this node's key (a restart): other keys may be missing
        for a while, and their nodes are not taken for dead meanwhile."""
        self._reliable_since = asyncio.get_running_loop().time()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.node_ttl / 3)
            try:
                await self._refresh()
            except CONNECTION_ERRORS as exc:
                # The broker reports the outage; a node cut off for node_ttl counts as dead.
                log.debug("liveness key not refreshed: %s", exc)
                self._reliable_since = None
            except RedisError as exc:
                # Refused (BUSY: a script over Redis's time limit): try again next time, and
                # keep running (a dead keep-alive would have this node taken for dead).
                log.warning("liveness key not refreshed: %s", exc)

    async def send(self, node: str, payload: bytes) -> Delivery:
        """Publish `payload` on `node`'s channel if the node is alive.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        key = self.key(node)
        try:
            async with self.broker.redis.pipeline(transaction=False) as pipe:
                pipe.exists(key)
                pipe.exists(self.key(self.node))
                pipe.execute_command(self.broker.keys.publish_command, key, payload)
                alive, ours, receivers = await pipe.execute()
        except CONNECTION_ERRORS as exc:
            self._reliable_since = None
            raise Unavailable(f"redis unavailable: {exc}") from exc
        if receivers:
            # Received, even if the key is missing (a Redis restart lost it).
            return Delivery.DELIVERED
        if alive:
            return Delivery.MISSED  # alive, but not subscribed right now
        if not ours or self._reliable_since is None:
            # Our own key is gone too: Redis lost its keys (or we were cut off). Set ours
            # again now; the others do within node_ttl / 3.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._refresh()
            self._restored()
            return Delivery.MISSED
        reliable_for = asyncio.get_running_loop().time() - self._reliable_since
        return Delivery.DEAD if reliable_for >= self.node_ttl else Delivery.MISSED
