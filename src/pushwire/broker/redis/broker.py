"""`RedisBroker`: the broker the hub sees, wired from the parts of this package.

It checks that the broker runs, starts and stops the parts, and routes what arrives on
pub/sub to the hub's callbacks (inbound.py): channel messages, presence changes and direct
messages.

Direct messages to user `U` go to its inbox, a Stream like a channel's history with its own
bounds (layout.py), published on the user's pub/sub channel in the publish queue's order
(publisher.py); every subscriber gets them in offset order. A process listens to the user
(`listen_user`) while it holds a session of `U`; what a session missed is read back by position.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ...clock import LOOP_CLOCK, Clock
from ...errors import InvalidState, Unavailable
from ...message import Data, Position
from ...presence import PresenceSnapshot
from ..base import (
    DeliverCallback,
    DirectBroker,
    DirectCallback,
    DirectDeliverCallback,
    History,
    HistoryBounds,
    HistoryPolicy,
    PresenceCallback,
    PublishCallback,
    ResubscribedCallback,
)
from .health import CONNECTION_ERRORS, Health, HealthReport
from .history import HistoryReader
from .inbound import Inbound
from .layout import Keys, Retention
from .presence import RedisPresence
from .publisher import DoneCallback, Publisher
from .subscriber import ListenCallback, Subscriber

__all__ = ["RedisBroker"]

log = logging.getLogger("pushwire.broker.redis")


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class RedisBroker(HealthReport):
    """Fan-out and history across processes through one Redis server.

    Args:
        url: the Redis server, `redis://[:password@]host:port/db` (or `rediss://`, `unix://`).
        prefix: put before every key and pub/sub channel name.
        history_size: messages kept per channel for recovery (0: none).
        history_ttl: seconds a message stays in history.
        history_bytes: bytes of message data kept per channel (0: no such bound); the
            oldest entries go first, and a message larger than it is not kept.
        channel_ttl: seconds a channel's epoch and offset outlive its last publish; an idle
            channel then starts again with a new epoch. At least `history_ttl`.
        idempotency_ttl: seconds a publish's idempotency key is remembered (see
            `Broker.publish`).
        max_pending: publishes waiting to be sent; one more fails with `Unavailable`.
        max_batch: publishes sent per round trip to Redis.
        max_batch_bytes: data bytes per round trip; a batch closes once over it, so one
            larger message still goes alone.
        timeout: seconds to connect, for a command's answer, and for a subscription's
            confirmation.
        health_check_interval: seconds of silence on the subscription connection after which
            it is PINGed; no answer within as many seconds more counts as a lost connection.
        reconnect_min: first wait before reconnecting, seconds; it doubles per failed
            attempt up to `reconnect_max`, and each wait is cut by a random 0-50 % so that
            nodes do not reconnect in lockstep.
        reconnect_max: longest wait between reconnection attempts, seconds.
        on_resubscribed: called with the channels subscribed again after a lost connection,
            once Redis confirmed them; settable later as the attribute of the same name.
        presence_ttl: seconds a presence entry lives unrefreshed; this process refreshes its
            own every third of it (presence.py).
        presence_batch: presence members one Redis script call touches at most.
        inbox_size: direct messages kept per user (about: trimmed with `MAXLEN ~`, read
            exactly; 0: none).
        inbox_bytes: bytes of direct messages kept per user (exactly; 0: no byte bound).
        inbox_ttl: seconds a direct message is kept; a user's inbox keys expire this long
            after its last direct message.
        clock: when this process's presence refreshes are due (Redis keeps its own time for
            history and expiry).
        sharded: `url` is a master of a Redis Cluster (cluster.py): sharded pub/sub, names
            hash-tagged (layout.py).

    The options are read once, here: the attributes of the same names say what was given.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "pushwire:",
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        history_bytes: int = 1024 * 1024,
        channel_ttl: float = 7 * 24 * 3600.0,
        idempotency_ttl: float = 300.0,
        max_pending: int = 10_000,
        max_batch: int = 256,
        max_batch_bytes: int = 1024 * 1024,
        timeout: float = 5.0,
        health_check_interval: float = 10.0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        on_resubscribed: ResubscribedCallback | None = None,
        presence_ttl: float = 30.0,
        presence_batch: int = 500,
        clock: Clock = LOOP_CLOCK,
        inbox_size: int = 1000,
        inbox_bytes: int = 1024 * 1024,
        inbox_ttl: float = 86400.0,
        sharded: bool = False,
    ) -> None:
        if history_size < 0 or history_bytes < 0:
            raise ValueError("history_size and history_bytes must be >= 0")
        if not 0 < history_ttl <= channel_ttl:
            raise ValueError(
                f"need 0 < history_ttl <= channel_ttl, not {history_ttl} and {channel_ttl}"
            )
        if inbox_size < 0 or inbox_bytes < 0 or inbox_ttl <= 0:
            raise ValueError("need inbox_size >= 0, inbox_bytes >= 0 and inbox_ttl > 0")
        if idempotency_ttl <= 0:
            raise ValueError(f"idempotency_ttl must be > 0, not {idempotency_ttl}")
        if max_pending < 1 or max_batch < 1:
            raise ValueError("max_pending and max_batch must be >= 1")
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if timeout <= 0 or health_check_interval <= 0:
            raise ValueError("timeout and health_check_interval must be > 0")
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes
        self.channel_ttl = channel_ttl
        self.idempotency_ttl = idempotency_ttl
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.inbox_size = inbox_size
        self.inbox_bytes = inbox_bytes
        self.inbox_ttl = inbox_ttl
        #: The names in Redis (for other keys of this node: nodes.py).
        self.keys = Keys(prefix, sharded)

        # No retries inside redis-py: a failure must surface here, once, so that it is
        # reported, and a publish must never be run twice. RESP2: pub/sub messages are plain
        # replies (redis-py's RESP3 push path formats each one for a debug log).
        self._client = Redis.from_url(
            url,
            protocol=2,
            decode_responses=False,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        kwargs = self._client.connection_pool.connection_kwargs
        where = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        retention = self._retention = Retention.of(
            history_size, history_ttl, channel_ttl, idempotency_ttl, history_bytes
        )
        inbox = Retention.of(inbox_size, inbox_ttl, inbox_ttl, max_bytes=inbox_bytes)
        self._health = Health(
            where, reconnect_min, reconnect_max, lambda: len(self._subscriber.channels)
        )
        self._publisher = Publisher(
            self._client,
            self.keys,
            retention,
            inbox,
            self._health,
            max_pending=max_pending,
            max_batch=max_batch,
            max_batch_bytes=max_batch_bytes,
        )
        self._history = HistoryReader(self._client, self.keys.channel, retention, where)
        self._inboxes = HistoryReader(self._client, self.keys.inbox, inbox, where)
        self._presence = RedisPresence(
            self._client, self.keys, presence_ttl, timeout, presence_batch, clock
        )
        self._inbound = Inbound(self._presence)
        self._inbound.on_resubscribed = on_resubscribed
        self._subscriber = Subscriber(
            self._client,
            self.keys,
            self._health,
            timeout=timeout,
            health_check_interval=health_check_interval,
            receive=self._inbound.receive,
            on_resubscribed=self._inbound.resubscribed,
        )
        self._state = _State.NEW
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def redis(self) -> Redis:
        """The command connection pool (for other keys of this node: nodes.py)."""
        return self._client

    # -- lifecycle --------------------------------------------------------------------------

    def attach(self, deliver: DeliverCallback) -> None:
        self._inbound.deliver = deliver

    def attach_presence(self, deliver: PresenceCallback) -> None:
        self._presence.deliver = deliver

    def attach_direct(self, deliver: DirectDeliverCallback) -> None:
        self._inbound.deliver_direct = deliver

    def attach_resubscribed(self, callback: ResubscribedCallback) -> None:
        self._inbound.on_resubscribed = callback

    def watch_topology(self, callback: Callable[[], None]) -> None:
        """Call `callback` when an outage begins or Redis answers MOVED or ASK (a Redis
        Cluster's slot map may have changed: cluster.py)."""
        self._health.on_topology = callback

    @property
    def on_resubscribed(self) -> ResubscribedCallback | None:
        """Called with the channels subscribed again after a lost connection."""
        return self._inbound.on_resubscribed

    @on_resubscribed.setter
    def on_resubscribed(self, callback: ResubscribedCallback | None) -> None:
        self._inbound.on_resubscribed = callback

    @property
    def direct(self) -> DirectBroker:
        """This broker: processes share users through Redis (`send_direct`, `listen_user`)."""
        return self

    @property
    def spans_processes(self) -> bool:
        """True: direct messages reach every process listening to their user."""
        return True

    async def start(self) -> None:
        """Connect, load the publish script and open the subscription connection.

        Raises:
            Unavailable: Redis could not be reached (nothing is left running).
            InvalidState: the broker was started before.
        """
        if self._state is not _State.NEW:
            raise InvalidState(f"redis broker is {self._state.value}")
        try:
            await self._publisher.load_script()
            await self._subscriber.connect()
        except CONNECTION_ERRORS as exc:
            await self._client.aclose()
            self._state = _State.CLOSED
            raise Unavailable(f"redis at {self._health.where} unreachable: {exc}") from exc
        self._state = _State.RUNNING
        self._health.publishing = self._health.subscribed = True
        self._tasks = [
            asyncio.create_task(self._publisher.run(), name="pushwire redis sender"),
            asyncio.create_task(self._subscriber.run(), name="pushwire redis reader"),
        ]
        self._presence.start()

    async def close(self) -> None:
        """Send what is queued (for up to `timeout` seconds), then disconnect.

        Publishes that could not be sent get `Unavailable`; nothing is delivered after it
        returns.
        """
        if self._state is _State.CLOSED:
            return
        running = self._state is _State.RUNNING
        if running:
            await self._presence.close()  # goodbye: this process's members leave
        self._state = _State.CLOSED
        if running:
            await self._publisher.drain(self.timeout)
        # Cancel again if need be: on Python 3.11 a cancellation that meets an expiring
        # `asyncio.timeout` inside redis-py can be taken for the timeout.
        pending = set(self._tasks)
        for _ in range(3):
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=self.timeout)
            if not pending:
                break
        else:
            log.error("redis broker tasks did not stop: %s", pending)
        self._tasks = []
        self._inbound.detach()
        self._publisher.fail_all(Unavailable("redis broker closed before the publish was sent"))
        await self._subscriber.close()
        await self._client.aclose()

    def _check_running(self) -> None:
        if self._state is not _State.RUNNING:
            raise InvalidState(f"redis broker is {self._state.value}")

    # -- publishing -------------------------------------------------------------------------

    def set_history_policy(self, policy: HistoryPolicy) -> None:
        """Per-channel history bounds (`Broker.set_history_policy`); a `ttl` beyond
        `channel_ttl` is cut to it (a channel's position is forgotten then)."""
        default = self._retention
        made: dict[HistoryBounds, Retention] = {}

        def retention_of(channel: str) -> Retention:
            bounds = policy(channel)
            if bounds is None:
                return default
            retention = made.get(bounds)
            if retention is None:
                ttl = min(bounds.ttl, self.channel_ttl)
                max_bytes = self.history_bytes if bounds.max_bytes is None else bounds.max_bytes
                retention = made[bounds] = Retention.of(
                    bounds.size, ttl, self.channel_ttl, self.idempotency_ttl, max_bytes
                )
            return retention

        self._publisher.retention_of = retention_of
        self._history.retention_of = retention_of

    def publish(
        self,
        channel: str,
        data: Data,
        done: PublishCallback | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Queue `data` as the channel's next message; `done` learns its fate (publisher.py;
        `idempotency_key`: see `Broker.publish`).

        `done` gets `Unavailable` at once when Redis is down or `max_pending` publishes wait.
        """
        if self._state is _State.RUNNING:
            self._publisher.enqueue(
                channel, data, done, direct=False, idempotency_key=idempotency_key
            )
        else:
            self._enqueue(channel, data, done, direct=False)

    def send_direct(self, user: str, data: Data, done: DirectCallback | None = None) -> None:
        """Queue a direct message to `user`'s inbox, for every process listening to it; `done`
        gets it with its position and how many processes received it (PUBLISH's answer), or
        `Unavailable` like `publish`."""
        self._enqueue(user, data, done, direct=True)

    def _enqueue(self, target: str, data: Data, done: DoneCallback | None, *, direct: bool) -> None:
        if self._state is _State.RUNNING:
            self._publisher.enqueue(target, data, done, direct=direct)
        else:
            error = InvalidState(f"redis broker is {self._state.value}")
            self._publisher.refuse(target, done, error, direct=direct)

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(self, channel: str, *, recover: bool = False) -> None:
        """Subscribe this process to `channel`; returns once Redis confirmed it, or once the
        connection was lost (the channel is then subscribed on reconnection). `recover`: the
        channel comes from another shard (cluster.py): once confirmed, `on_resubscribed`
        names it, before any of its messages is passed on."""
        self._check_running()
        await self._subscriber.subscribe(channel, recover=recover)

    async def unsubscribe(self, channel: str) -> None:
        """This process stops receiving `channel` (nothing of it is delivered from now on)."""
        await self._subscriber.unsubscribe(channel)

    async def listen(self, topic: str, callback: ListenCallback, *, recover: bool = False) -> None:
        """Pass every payload PUBLISHed to the pub/sub channel `topic` (taken as is, no
        prefix) to `callback`, on the event loop; returns like `subscribe` (`recover`: then
        `on_resubscribed` is called with no channel)."""
        self._check_running()
        await self._subscriber.listen(topic, callback, recover=recover)

    async def unlisten(self, topic: str) -> None:
        """Stop passing `topic`'s payloads on (nothing more reaches the callback)."""
        await self._subscriber.unlisten(topic)

    async def listen_user(self, user: str, *, recover: bool = False) -> None:
        """Receive the direct messages to `user`; returns like `listen`."""

        def receive(payload: bytes) -> None:
            self._inbound.receive_direct(user, payload)

        await self.listen(self.keys.user(user), receive, recover=recover)

    async def unlisten_user(self, user: str) -> None:
        """No more direct messages to `user` here."""
        await self.unlisten(self.keys.user(user))

    # -- presence ---------------------------------------------------------------------------

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        self._presence.join(channel, member, entry)

    def presence_leave(self, channel: str, member: str) -> None:
        self._presence.leave(channel, member)

    def take_presence(self, channel: str) -> dict[str, bytes]:
        """This process's members of `channel` (member -> entry), no longer refreshed here
        and not told to leave: the channel moved to another shard, which joins them."""
        return self._presence.members.pop(channel, {})

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        """The channel's members and count (see `Broker.presence`).

        Raises:
            Unavailable: Redis cannot be reached.
        """
        self._check_running()
        return await self._presence.snapshot(channel, limit)

    # -- positions and history --------------------------------------------------------------

    async def position(self, channel: str) -> Position:
        """The channel's last position; a channel Redis does not know gets a new epoch.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        self._check_running()
        return await self._history.position(channel)

    async def history(self, channel: str, since: Position) -> History:
        """At most `history_size` messages after `since`, none older than `history_ttl`.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        self._check_running()
        return await self._history.history(channel, since)

    async def inbox_position(self, user: str) -> Position:
        """The last position of `user`'s inbox; an inbox Redis does not know gets a new epoch.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        self._check_running()
        return await self._inboxes.position(user)

    async def inbox_history(self, user: str, since: Position) -> History:
        """At most `inbox_size` direct messages after `since`, none older than `inbox_ttl`.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        self._check_running()
        return await self._inboxes.history(user, since)
