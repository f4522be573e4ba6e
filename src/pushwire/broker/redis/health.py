"""The Redis broker's connections: what counts as lost, how it is reported, when to retry.

The broker has two connections to Redis: the command connection (publishes, scripts, reads;
publisher.py restores it) and the subscription connection (subscriber.py restores it).

Guaranteed:

- A lost connection is logged once per outage: a warning when the first of the two is lost,
  another when both are restored (with how long it took and how many channels are
  subscribed again); failures in between are logged at debug level only.
- On a Redis Cluster, `on_topology` is told when an outage begins and when Redis answers that
  a slot is served elsewhere (`moved`): the cluster broker reads the slot map again.
- Each connection is retried with exponential backoff from `reconnect_min` to
  `reconnect_max` seconds, each wait cut by a random 0-50 % so that nodes do not reconnect
  in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from redis.exceptions import AskError, MovedError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["CONNECTION_ERRORS", "MOVED_ERRORS", "Health", "HealthReport"]

log = logging.getLogger("pushwire.broker.redis")

#: What a lost, refused or silent connection raises.
CONNECTION_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)
#: What a Redis Cluster node answers for a slot it does not serve (any more, or right now).
MOVED_ERRORS: Final = (MovedError, AskError)

T = TypeVar("T")


class Health:
    """Whether the broker's two connections work; reports outages and paces reconnections.

    Whoever finds a connection lost or restored sets `publishing` or `subscribed`, then
    calls `changed`.

    Args:
        where: the Redis server as logs and errors name it (`host:port`, or a socket path).
        reconnect_min: first wait before reconnecting, seconds.
        reconnect_max: longest wait between reconnection attempts, seconds.
        subscribed_channels: how many channels are subscribed now (told when restored).
    """

    def __init__(
        self,
        where: str,
        reconnect_min: float,
        reconnect_max: float,
        subscribed_channels: Callable[[], int],
    ) -> None:
        self.where = where
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._subscribed_channels = subscribed_channels
        #: The command connection works (set by the publisher).
        self.publishing = False
        #: The subscription connection works (set by the subscriber).
        self.subscribed = False
        #: An outage is going on: its beginning was logged, its end not yet.
        self.outage = False
        #: Subscription connections lost since start, and whether the current one receives
        #: everything subscribed (connected, every subscription confirmed): the subscriber
        #: sets both (`continuity`).
        self.losses = 0
        self.receiving = False
        #: Outages ended (both connections restored) since start.
        self.reconnects = 0
        #: Publish round trips to Redis (one per batch of publishes) and their total seconds.
        self.round_trips = 0
        self.round_trip_seconds = 0.0
        #: Publishes queued (the publisher sets it).
        self.pending: Callable[[], int] = lambda: 0
        #: Told when an outage begins or Redis answers MOVED or ASK (cluster.py sets it).
        self.on_topology: Callable[[], None] = _nothing
        self._outage_began = 0.0

    def stats(self) -> dict[str, float]:
        """`up` (1.0 while both connections work), outages ended (`reconnects`), publish
        round trips and their seconds, publishes queued (`pending`)."""
        return {
            "up": float(self.publishing and self.subscribed),
            "reconnects": self.reconnects,
            "round_trips": self.round_trips,
            "round_trip_seconds": self.round_trip_seconds,
            "pending": self.pending(),
        }

    def changed(self, error: BaseException | None) -> None:
        """Log once when an outage begins (with `error`) and once when both connections are
        back."""
        healthy = self.publishing and self.subscribed
        now = asyncio.get_running_loop().time()
        if not healthy and not self.outage:
            self.outage = True
            self._outage_began = now
            self.on_topology()
            log.warning(
                "redis at %s: connection lost (%s); reconnecting with backoff %s to %s s",
                self.where,
                error,
                self.reconnect_min,
                self.reconnect_max,
            )
        elif healthy and self.outage:
            self.outage = False
            self.reconnects += 1
            log.warning(
                "redis at %s: connection restored after %.1f s, %d channels subscribed again",
                self.where,
                now - self._outage_began,
                self._subscribed_channels(),
            )

    def moved(self, error: BaseException) -> None:
        """Redis answered that a slot is served elsewhere (MOVED, ASK)."""
        log.debug("redis at %s: %s", self.where, error)
        self.on_topology()

    async def reconnect(self, connect: Callable[[], Awaitable[T]]) -> T:
        """What `connect()` returns, called after each backoff wait until it raises no
        connection error (logged at debug level)."""
        failures = 0
        while True:
            await asyncio.sleep(self._backoff(failures))
            failures += 1
            try:
                return await connect()
            except CONNECTION_ERRORS as exc:
                log.debug("redis at %s still unavailable: %s", self.where, exc)

    def _backoff(self, failures: int) -> float:
        delay = min(self.reconnect_max, self.reconnect_min * 2.0 ** min(failures, 30))
        return delay * (1 - random.random() / 2)


def _nothing() -> None:
    pass


class HealthReport:
    """`BrokerHealth` for the Redis broker (a base class: its `_health` is read by `/readyz`
    and `/metrics`)."""

    _health: Health

    def health_stats(self) -> dict[str, float]:
        """`Health.stats`."""
        return self._health.stats()

    @property
    def continuity(self) -> int | None:
        """`Broker.continuity`: the subscription connections lost so far while the current
        one receives everything subscribed; None while it may not (down, resubscribing).
        Every message published while it stays the same number reached this process."""
        health = self._health
        return health.losses if health.receiving else None

    @property
    def losses(self) -> int:
        """Subscription connections lost since start (what `continuity` counts)."""
        return self._health.losses
