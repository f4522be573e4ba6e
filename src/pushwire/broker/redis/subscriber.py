"""The Redis broker's subscription connection: what it subscribes, and the task reading it.

Channels are subscribed under their pub/sub names (layout.py); `listen` subscribes other
pub/sub channels on the same connection (a user's direct messages, node-to-node requests in
nodes.py), whose payloads go to a callback as they are.

Guaranteed:

- One Redis subscription per channel per process, on one connection read by one task.
- `subscribe` returns once Redis confirmed the subscription (or once that connection was lost:
  the reconnection subscribes it): whatever is published afterwards reaches this process.
  `listen` returns the same way.
- The connection is PINGed after `health_check_interval` seconds of silence; no answer within
  as many seconds more counts as a lost connection.
- A lost connection is reported and retried (health.py), and every channel and listened
  pub/sub channel is subscribed again. Once Redis confirmed those subscriptions,
  `on_resubscribed(channels)` names the channels that may have missed messages meanwhile:
  read their `history` then (anything published later arrives live; compare offsets, as the
  two may overlap).

On a Redis Cluster (`Keys.sharded`) the same holds per shard, with sharded pub/sub: one
SSUBSCRIBE per pub/sub channel (each hashes to its own slot), and a sharded subscription
Redis drops (its slot moved to another shard), or a subscription refused (CLUSTERDOWN while
a restarted master rejoins, MOVED), counts as a lost connection. A master is subscribed again
only once it serves its slots (`cluster_state:ok`: a restarted master refuses commands for
about 2 s, and SSUBSCRIBE alone would succeed), so that the history read that follows
`on_resubscribed` is answered.

Not guaranteed: live delivery across an outage. Pub/sub does not replay: messages published
while this process's subscription was down are only in history (see `on_resubscribed`), and
a user's direct messages or a node's requests published meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..base import ResubscribedCallback
from .health import CONNECTION_ERRORS, Health
from .layout import Keys

__all__ = ["ListenCallback", "Subscriber"]

log = logging.getLogger("pushwire.broker.redis")

#: Called with each payload published to a pub/sub channel subscribed with `listen`.
ListenCallback = Callable[[bytes], None]

# What pub/sub and sharded pub/sub call their messages and subscription confirmations.
_MESSAGES = (b"message", b"smessage")
_CONFIRMATIONS = (b"subscribe", b"ssubscribe")


class Subscriber:
    """The subscription connection, its reader task (`run`) and what is subscribed on it.

    Args:
        client: the broker's Redis client (its pool makes the connection).
        keys: the names in Redis.
        health: where the connection's state is kept and reported.
        timeout: seconds to wait for a subscription's confirmation.
        health_check_interval: seconds of silence after which the connection is PINGed.
        receive: called with `(channel, payload)` for each payload of a subscribed channel.
        on_resubscribed: called with the channels subscribed again after a lost connection,
            once Redis confirmed them and every listened pub/sub channel (maybe none).
    """

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        health: Health,
        *,
        timeout: float,
        health_check_interval: float,
        receive: Callable[[str, bytes], None],
        on_resubscribed: ResubscribedCallback,
    ) -> None:
        self._client = client
        self._keys = keys
        self._health = health
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self._receive = receive
        self._on_resubscribed = on_resubscribed
        #: The subscribed channels: channel -> pub/sub name (`_topics` is the way back).
        self.channels: dict[str, bytes] = {}
        self._topics: dict[bytes, str] = {}
        self._listeners: dict[bytes, ListenCallback] = {}
        self._connection: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._unconfirmed: set[bytes] = set()
        # Topics whose confirmation timed out: when it comes, what was published meanwhile
        # is recovered as after a lost connection.
        self._late: set[bytes] = set()
        self._resubscribed: frozenset[str] | None = None
        self._subscribe = "SSUBSCRIBE" if keys.sharded else "SUBSCRIBE"
        self._unsubscribe = "SUNSUBSCRIBE" if keys.sharded else "UNSUBSCRIBE"

    async def subscribe(self, channel: str, *, recover: bool = False) -> None:
        """Subscribe `channel`; returns once Redis confirmed it, or once the connection was
        lost (the channel is then subscribed on reconnection). `recover`: it may have missed
        messages (it was received through another shard): once confirmed, and before any of
        its messages is passed on, it is named to `on_resubscribed`."""
        if channel in self.channels:
            return
        topic = self._keys.topic(channel).encode()
        self.channels[channel] = topic
        self._topics[topic] = channel
        if recover and self._connection is not None:
            self._late.add(topic)  # else the reconnection recovers it
        await self._confirm(topic, repr(channel))

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel` (nothing of it is passed on from now on)."""
        topic = self.channels.pop(channel, None)
        if topic is None:
            return
        self._topics.pop(topic, None)
        await self._send_unsubscribe(topic, repr(channel))

    async def listen(self, topic: str, callback: ListenCallback, *, recover: bool = False) -> None:
        """Pass every payload PUBLISHed to the pub/sub channel `topic` (taken as is, no
        prefix) to `callback`, on the event loop; returns like `subscribe` (`recover`: once
        confirmed, `on_resubscribed` is called with no channel)."""
        name = topic.encode()
        self._listeners[name] = callback
        if recover and self._connection is not None:
            self._late.add(name)
        await self._confirm(name, topic)

    async def unlisten(self, topic: str) -> None:
        """Stop passing `topic`'s payloads on (nothing more reaches the callback)."""
        name = topic.encode()
        if self._listeners.pop(name, None) is None:
            return
        await self._send_unsubscribe(name, topic)

    async def connect(self) -> AbstractConnection:
        """Open the connection and subscribe everything subscribed so far (unconfirmed).

        Raises:
            redis.exceptions.ConnectionError: and the other `CONNECTION_ERRORS`.
        """
        make_connection = self._client.connection_pool.make_connection
        connection: AbstractConnection = make_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            if self._keys.sharded:
                await _serving(connection)
            # From here on `subscribe` sends on this connection itself; a channel both in
            # the snapshot and subscribed meanwhile is subscribed twice, which Redis ignores.
            self._connection = connection
            topics = [*self.channels.values(), *self._listeners]
            self._health.receiving = not topics
            if topics:
                self._unconfirmed = set(topics)
                # Sharded: one command per pub/sub channel, their slots differ.
                commands: list[tuple[str | bytes, ...]] = (
                    [(self._subscribe, topic) for topic in topics]
                    if self._keys.sharded
                    else [(self._subscribe, *topics)]
                )
                async with self._write_lock:
                    await connection.send_packed_command(connection.pack_commands(commands))
        except BaseException:
            self._connection = None
            self._health.receiving = False
            self._unconfirmed = set()
            await connection.disconnect(nowait=True)
            raise
        return connection

    async def close(self) -> None:
        """Release whoever waits for a confirmation and disconnect (once `run` is stopped)."""
        self._release_waiters()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)

    async def run(self) -> None:
        """Read the connection opened by `connect` until cancelled; reconnect when it is
        lost."""
        connection = self._connection
        while True:
            if connection is None:
                connection = await self._health.reconnect(self.connect)
                self._health.subscribed = True
                self._health.changed(None)
                self._resubscribed = frozenset(self.channels)
                self._notify_resubscribed()
            try:
                await self._read(connection)
            except (*CONNECTION_ERRORS, ResponseError) as exc:
                # ResponseError: a subscription refused (CLUSTERDOWN, MOVED): try again later.
                self._connection = None
                self._health.losses += 1
                self._health.receiving = False
                self._health.subscribed = False
                self._health.changed(exc)
                self._release_waiters()
                await connection.disconnect(nowait=True)
                connection = None

    async def _confirm(self, topic: bytes, channel: str) -> None:
        """SUBSCRIBE `topic` and wait for Redis to confirm it (see `subscribe`)."""
        connection = self._connection
        if connection is None:
            return  # the reader subscribes it when it reconnects
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(topic, []).append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._write_lock:
                    await connection.send_command(self._subscribe, topic)
                await waiter
        except TimeoutError:
            # Going on unconfirmed: once the confirmation comes, the channel is recovered
            # from history (`on_resubscribed`), as nothing says what came live meanwhile.
            self._late.add(topic)
            log.warning(
                "redis did not confirm the subscription to %s in %s s", channel, self.timeout
            )
        except CONNECTION_ERRORS as exc:
            # The reader sees the same loss and subscribes again on reconnection.
            log.debug("subscription to %s interrupted: %s", channel, exc)
        finally:
            waiters = self._waiters.get(topic)
            if waiters is not None:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    del self._waiters[topic]

    async def _send_unsubscribe(self, topic: bytes, channel: str) -> None:
        connection = self._connection
        if connection is None:
            return  # not subscribed on the next connection
        try:
            async with self._write_lock:
                await connection.send_command(self._unsubscribe, topic)
        except CONNECTION_ERRORS as exc:
            # The reader sees the same loss; the next connection leaves this channel out.
            log.debug("unsubscription from %s interrupted: %s", channel, exc)

    async def _read(self, connection: AbstractConnection) -> None:
        """Dispatch what the connection brings, until it fails."""
        interval = self.health_check_interval
        pinged = False
        while True:
            response = await connection.read_response(timeout=interval)
            if response is None:
                if pinged:
                    raise RedisTimeoutError(f"no answer to PING in {interval} s")
                async with self._write_lock:
                    await connection.send_command("PING")
                pinged = True
                continue
            pinged = False
            if not isinstance(response, list):
                continue  # PONG while no channel is subscribed
            kind = response[0]
            if kind in _MESSAGES:
                self._dispatch(response[1], response[2])
            elif kind in _CONFIRMATIONS:
                self._confirmed(response[1])
            elif kind == b"sunsubscribe" and self._wanted(response[1]):
                # Redis Cluster dropped it (its slot moved): subscribe everything again.
                raise RedisConnectionError(f"redis dropped the subscription to {response[1]!r}")

    def _wanted(self, topic: bytes) -> bool:
        return topic in self._topics or topic in self._listeners

    def _dispatch(self, topic: bytes, payload: bytes) -> None:
        listener = self._listeners.get(topic)
        if listener is not None:
            try:
                listener(payload)
            except Exception:
                log.exception("listen callback failed")
            return
        channel = self._topics.get(topic)
        if channel is not None:  # else unsubscribed while the message was on its way
            self._receive(channel, payload)

    def _confirmed(self, topic: bytes) -> None:
        for waiter in self._waiters.pop(topic, ()):
            if not waiter.done():
                waiter.set_result(None)
        if topic in self._late:
            self._late.discard(topic)
            channel = self._topics.get(topic)
            self._on_resubscribed(frozenset({channel} if channel is not None else ()))
        if self._unconfirmed:
            self._unconfirmed.discard(topic)
            if not self._unconfirmed:
                self._health.receiving = True
                self._notify_resubscribed()

    def _notify_resubscribed(self) -> None:
        channels = self._resubscribed
        if channels is None or self._unconfirmed:
            return
        self._resubscribed = None
        # Called with no channel too: listened pub/sub channels (users' direct messages)
        # may have missed payloads as well.
        self._on_resubscribed(channels)

    def _release_waiters(self) -> None:
        self._late.clear()  # the reconnection recovers every channel
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for waiter in futures:
                if not waiter.done():
                    waiter.set_result(None)
        self._unconfirmed = set()


async def _serving(connection: AbstractConnection) -> None:
    """Check that a cluster node serves its slots (`cluster_state:ok`).

    Raises:
        redis.exceptions.ConnectionError: it does not yet.
    """
    await connection.send_command("CLUSTER", "INFO")
    try:
        info = await connection.read_response()
    except ResponseError as exc:
        raise RedisConnectionError(f"redis cluster node refused CLUSTER INFO: {exc}") from exc
    text = info.decode() if isinstance(info, bytes) else str(info)
    if "cluster_state:ok" not in text:
        raise RedisConnectionError("redis cluster node not serving yet (cluster_state is not ok)")
