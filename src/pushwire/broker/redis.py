"""The Redis broker: many processes, one stream of offsets per channel.

Fan-out uses Redis pub/sub; offsets and history live in Redis, so every node sees the same
(epoch, offset) for a message. One Lua script, run with EVALSHA, stores each publish
atomically: it counts the offset, appends the message to the channel's Stream, trims it,
refreshes the keys' lifetimes and PUBLISHes it.

Guaranteed:

- Every node delivers a channel's messages with the same (epoch, offset), in offset order,
  offsets dense within an epoch (Redis runs the scripts one at a time).
- Publishes from one process are stored in the order of their `publish` calls (one queue,
  one sender task, batches pipelined in order on one connection) and each `done` is called
  exactly once: with the message once Redis has stored it, or with `Unavailable`.
- Text stays text, binary stays binary (the kind travels with the data).
- One Redis subscription per channel per process, on one connection read by one task.
- `subscribe` returns once Redis confirmed the subscription (or once that connection was lost:
  the reconnection subscribes it): whatever is published afterwards reaches this process.
- A lost connection is logged once per outage (a warning; another when it is restored),
  retried with exponential backoff from `reconnect_min` to `reconnect_max` seconds, and
  every channel is subscribed again. Once Redis confirmed those subscriptions,
  `on_resubscribed(channels)` names the channels that may have missed messages meanwhile:
  read their `history` then (anything published later arrives live; compare offsets, as the
  two may overlap).
- When Redis lost a channel's state (restart without persistence, flush, key expiry), the
  next access creates a new random epoch, and `history` after an older position says
  `complete=False`.
- While the publishing connection is down, `publish` fails at once with `Unavailable`.

Not guaranteed:

- Live delivery across an outage: pub/sub does not replay. Messages published while this
  process's subscription was down are only in history (see `on_resubscribed`).
- `Unavailable` does not prove a message was not stored: when the connection drops after
  Redis ran the script and before its answer arrived, the message is stored and fanned out
  but its publisher is told `Unavailable`.
- An order between processes publishing to one channel: Redis picks one, the same for all.
- Per-process order across a `SCRIPT FLUSH` that lands in the middle of a batch: the
  publishes that met NOSCRIPT are run again after the script is loaded, after the others.
- Redis Cluster and Sentinel are not supported (a channel's keys share a hash tag, so one
  channel would live on one shard, but pub/sub and discovery are not written for it).

Redis keys for channel `C` (default prefix `pushwire:`):

- `pushwire:{C}:meta`: a hash, `epoch` (random hex, created when missing, never changed) and
  `offset` (the last offset). It expires `channel_ttl` seconds after the last publish.
- `pushwire:{C}:history`: a Stream, one entry per message: `o` offset, `k` kind (`t` text,
  `b` binary), `d` data. Every publish trims it to about `history_size` entries (`XADD MAXLEN
  ~`: whole nodes, cheap) and exactly to the last `history_ttl` seconds of Redis's clock
  (`XTRIM MINID`, Stream IDs being Redis times). It expires `history_ttl` seconds after the
  last publish. `history` reads at most `history_size` entries and none older than
  `history_ttl` (so the age bound holds on a quiet channel too), so its answer does not
  depend on where the approximate trim fell.
- pub/sub channel `pushwire:{C}`: each message as `<epoch> <offset> <kind> <data>`, and the
  channel's presence changes as `!<version> <count> j|l <entry>` (broker/redis_presence.py,
  which also describes the presence keys).

Direct messages to user `U` are PUBLISHed (no script, no history) to the pub/sub channel
`pushwire:user:U` as `<kind> <id> <data>` (the id: this process's random prefix and a count,
unique; every subscriber gets a channel's messages in Redis's one order); a process listens
to it (`listen_user`) while it holds a session of `U`, so one subscription per user per
process. They share the publish queue
(`max_pending`) and its order with channel publishes; their `done` gets PUBLISH's answer, the
number of processes that received the message. Like channel messages, what is published while
a process's subscription is down does not reach it (and there is no history to replay).

`listen` subscribes other pub/sub channels on the same connection (node-to-node requests,
`broker/nodes.py`): their payloads go to a callback as they are, and they are subscribed
again after a lost connection like every channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable
from typing import Final, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..errors import InvalidState, PushwireError, Unavailable
from ..message import Data, Message, Position
from ..presence import PresenceSnapshot
from .base import (
    DeliverCallback,
    DirectBroker,
    DirectCallback,
    DirectDeliverCallback,
    History,
    PresenceCallback,
    PublishCallback,
    ResubscribedCallback,
)
from .redis_presence import RedisPresence, parse_event

__all__ = ["ListenCallback", "RedisBroker"]

log = logging.getLogger("pushwire.broker.redis")

#: Called with each payload published to a pub/sub channel subscribed with `listen`.
ListenCallback = Callable[[bytes], None]

#: What a lost, refused or silent connection raises.
_CONNECTION_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)

# KEYS: meta, history. ARGV: topic, candidate epoch, kind, data, history_size,
# history_ttl ms, channel_ttl ms. Returns {epoch, offset}.
PUBLISH_SCRIPT: Final = """
local meta, history = KEYS[1], KEYS[2]
if redis.call('HSETNX', meta, 'epoch', ARGV[2]) == 1 then
  redis.call('DEL', history)
end
local epoch = redis.call('HGET', meta, 'epoch')
local offset = string.format('%d', redis.call('HINCRBY', meta, 'offset', 1))
redis.call('PEXPIRE', meta, ARGV[7])
if tonumber(ARGV[5]) > 0 then
  redis.call('XADD', history, 'MAXLEN', '~', ARGV[5], '*',
             'o', offset, 'k', ARGV[3], 'd', ARGV[4])
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
                 - tonumber(ARGV[6])
  if cutoff > 0 then
    redis.call('XTRIM', history, 'MINID', string.format('%d', cutoff))
  end
  redis.call('PEXPIRE', history, ARGV[6])
end
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. offset .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return {epoch, tonumber(offset)}
"""

# KEYS: meta, history. ARGV: candidate epoch, since epoch, since offset, limit,
# channel_ttl ms, history_ttl ms. Returns {epoch, offset, entries newest first}.
READ_SCRIPT: Final = """
local meta, history = KEYS[1], KEYS[2]
if redis.call('HSETNX', meta, 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', history)
  redis.call('HSET', meta, 'offset', 0)
  redis.call('PEXPIRE', meta, ARGV[5])
end
local epoch = redis.call('HGET', meta, 'epoch')
local offset = tonumber(redis.call('HGET', meta, 'offset'))
local count = offset
if ARGV[2] == epoch then
  count = offset - tonumber(ARGV[3])
end
if count > tonumber(ARGV[4]) then
  count = tonumber(ARGV[4])
end
local entries = {}
if count > 0 then
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
                 - tonumber(ARGV[6])
  if cutoff < 0 then
    cutoff = 0
  end
  entries = redis.call('XREVRANGE', history, '+', string.format('%d', cutoff), 'COUNT', count)
end
return {epoch, offset, entries}
"""

_TEXT: Final = b"t"
_BINARY: Final = b"b"

# channel (or user), data as given, kind, data as bytes, done, direct (to a user)
_Publish: TypeAlias = tuple[str, Data, bytes, bytes, PublishCallback | DirectCallback | None, bool]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class RedisBroker:
    """Fan-out and history across processes through one Redis server.

    Args:
        url: the Redis server, `redis://[:password@]host:port/db` (or `rediss://`, `unix://`).
        prefix: put before every key and pub/sub channel name.
        history_size: messages kept per channel for recovery (0: none).
        history_ttl: seconds a message stays in history.
        channel_ttl: seconds a channel's epoch and offset outlive its last publish; an idle
            channel then starts again with a new epoch. At least `history_ttl`.
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
            own every third of it (broker/redis_presence.py).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "pushwire:",
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        channel_ttl: float = 7 * 24 * 3600.0,
        max_pending: int = 10_000,
        max_batch: int = 256,
        max_batch_bytes: int = 1024 * 1024,
        timeout: float = 5.0,
        health_check_interval: float = 10.0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        on_resubscribed: ResubscribedCallback | None = None,
        presence_ttl: float = 30.0,
    ) -> None:
        if history_size < 0:
            raise ValueError(f"history_size must be >= 0, not {history_size}")
        if not 0 < history_ttl <= channel_ttl:
            raise ValueError(
                f"need 0 < history_ttl <= channel_ttl, not {history_ttl} and {channel_ttl}"
            )
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
        self.channel_ttl = channel_ttl
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.on_resubscribed = on_resubscribed

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
        self._where = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        self._publish_script = self._client.register_script(PUBLISH_SCRIPT)
        self._read_script = self._client.register_script(READ_SCRIPT)
        self._history_ttl_ms = str(round(history_ttl * 1000))
        self._channel_ttl_ms = str(round(channel_ttl * 1000))
        self._history_size_arg = str(history_size)
        self._presence = RedisPresence(self._client, self._presence_keys, presence_ttl, timeout)

        self._state = _State.NEW
        self._deliver: DeliverCallback | None = None
        self._deliver_direct: DirectDeliverCallback | None = None
        self._direct_prefix = secrets.token_hex(6).encode()
        self._direct_count = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        # publishing
        self._queue: deque[_Publish] = deque()
        self._in_flight: list[_Publish] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._publish_up = False
        # subscribing: channel -> pub/sub name, and back
        self._channels: dict[str, bytes] = {}
        self._topics: dict[bytes, str] = {}
        self._listeners: dict[bytes, ListenCallback] = {}
        self._subscriber: AbstractConnection | None = None
        self._subscribe_up = False
        self._write_lock = asyncio.Lock()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._unconfirmed: set[bytes] = set()
        self._resubscribed: frozenset[str] | None = None
        # outage reporting
        self._outage = False
        self._outage_began = 0.0

    @property
    def redis(self) -> Redis:
        """The command connection pool (for other keys of this node: `broker/nodes.py`)."""
        return self._client

    # -- lifecycle --------------------------------------------------------------------------

    def attach(self, deliver: DeliverCallback) -> None:
        self._deliver = deliver

    def attach_presence(self, deliver: PresenceCallback) -> None:
        self._presence.deliver = deliver

    def attach_direct(self, deliver: DirectDeliverCallback) -> None:
        self._deliver_direct = deliver

    def attach_resubscribed(self, callback: ResubscribedCallback) -> None:
        self.on_resubscribed = callback

    @property
    def direct(self) -> DirectBroker:
        """This broker: processes share users through Redis (`send_direct`, `listen_user`)."""
        return self

    async def start(self) -> None:
        """Connect, load the publish script and open the subscription connection.

        Raises:
            Unavailable: Redis could not be reached (nothing is left running).
            InvalidState: the broker was started before.
        """
        if self._state is not _State.NEW:
            raise InvalidState(f"redis broker is {self._state.value}")
        try:
            await self._client.script_load(PUBLISH_SCRIPT)
            await self._open_subscriber()
        except _CONNECTION_ERRORS as exc:
            await self._client.aclose()
            self._state = _State.CLOSED
            raise Unavailable(f"redis at {self._where} unreachable: {exc}") from exc
        self._state = _State.RUNNING
        self._publish_up = self._subscribe_up = True
        self._idle.set()
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="pushwire redis sender"),
            asyncio.create_task(self._read_loop(), name="pushwire redis reader"),
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
        if running and self._publish_up and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._idle.wait()
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
        self._deliver = None
        self._deliver_direct = None
        error = Unavailable("redis broker closed before the publish was sent")
        self._fail(self._in_flight, error)
        self._fail(self._queue, error)
        self._in_flight = []
        self._queue.clear()
        self._release_waiters()
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.disconnect(nowait=True)
        await self._client.aclose()

    # -- publishing -------------------------------------------------------------------------

    def publish(self, channel: str, data: Data, done: PublishCallback | None = None) -> None:
        """Queue `data` as the channel's next message; `done` learns its fate (see the class).

        `done` gets `Unavailable` at once when Redis is down or `max_pending` publishes wait.
        """
        self._enqueue(channel, data, done, direct=False)

    def send_direct(self, user: str, data: Data, done: DirectCallback | None = None) -> None:
        """Queue a direct message to `user` for every process listening to it; `done` gets
        how many processes received it (PUBLISH's answer), or `Unavailable` like `publish`."""
        self._enqueue(user, data, done, direct=True)

    def _enqueue(
        self,
        channel: str,
        data: Data,
        done: PublishCallback | DirectCallback | None,
        *,
        direct: bool,
    ) -> None:
        error: PushwireError | None = None
        if self._state is not _State.RUNNING:
            error = InvalidState(f"redis broker is {self._state.value}")
        elif not self._publish_up:
            error = Unavailable(f"redis at {self._where} unavailable")
        elif len(self._queue) >= self.max_pending:
            error = Unavailable(f"publish queue full ({len(self._queue)} pending)")
        if error is not None:
            if done is not None:
                done(error)
            elif not self._outage:
                what = "direct message to user" if direct else "publish to"
                log.warning("%s %r dropped: %s", what, channel, error)
            return
        item: _Publish
        if isinstance(data, str):
            item = (channel, data, _TEXT, data.encode("utf-8", "surrogatepass"), done, direct)
        else:
            item = (channel, data, _BINARY, bytes(data), done, direct)
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()

    async def _send_loop(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [queue.popleft()]
            size = len(batch[0][3])
            while queue and len(batch) < self.max_batch and size < self.max_batch_bytes:
                batch.append(queue.popleft())
                size += len(batch[-1][3])
            self._in_flight = batch
            try:
                await self._send(batch)
            except _CONNECTION_ERRORS as exc:
                self._publish_up = False
                self._health_changed(exc)
                error = Unavailable(f"redis at {self._where} unavailable: {exc}")
                self._fail(batch, error)
                self._fail(queue, error)
                queue.clear()
                self._in_flight = []
                await self._restore_publishing()
            self._in_flight = []

    async def _send(self, batch: list[_Publish]) -> None:
        """Run the publish script for each of `batch`, in order, in one round trip."""
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            for channel, _data, kind, payload, _done, direct in batch:
                if direct:
                    topic = self._user_topic(channel)
                    message_id = b"%b-%d" % (self._direct_prefix, next(self._direct_count))
                    pipe.execute_command("PUBLISH", topic, b" ".join((kind, message_id, payload)))
                    continue
                meta, history, topic = self._keys(channel)
                pipe.evalsha(
                    self._publish_script.sha,
                    2,
                    meta,
                    history,
                    topic,
                    secrets.token_hex(4),
                    kind,
                    payload,
                    self._history_size_arg,
                    self._history_ttl_ms,
                    self._channel_ttl_ms,
                )
            results = await pipe.execute(raise_on_error=False)
            retry: list[_Publish] = []
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):
                    retry.append(item)  # SCRIPT FLUSH: load it again, run these again
                else:
                    self._finish(item, result)
            if not retry:
                return
            await self._client.script_load(PUBLISH_SCRIPT)
            batch = retry
        self._fail(batch, Unavailable("redis keeps forgetting the publish script"))

    def _finish(self, item: _Publish, result: object) -> None:
        channel, data, _kind, _payload, done, direct = item
        outcome: Message | int | PushwireError
        if direct and isinstance(result, int):
            outcome = result
        elif isinstance(result, list):
            outcome = Message(channel, result[0].decode("ascii"), result[1], data)
        elif isinstance(result, ResponseError):
            outcome = Unavailable(f"redis refused the publish: {result}")
        else:
            outcome = Unavailable(f"unexpected answer from redis: {result!r}")
        if done is None:
            if isinstance(outcome, PushwireError):
                what = "direct message to user" if direct else "publish to"
                log.warning("%s %r failed: %s", what, channel, outcome)
            return
        try:
            done(outcome)  # type: ignore[arg-type]  # a Message for a publish, an int for a direct
        except Exception:
            log.exception("publish callback failed")

    @staticmethod
    def _fail(items: list[_Publish] | deque[_Publish], error: PushwireError) -> None:
        for channel, _data, _kind, _payload, done, _direct in items:
            if done is None:
                log.debug("publish to %r failed: %s", channel, error)
                continue
            try:
                done(error)
            except Exception:
                log.exception("publish callback failed")

    async def _restore_publishing(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._backoff(failures))
            failures += 1
            try:
                await self._client.ping()
                await self._client.script_load(PUBLISH_SCRIPT)
            except _CONNECTION_ERRORS as exc:
                log.debug("redis at %s still unavailable: %s", self._where, exc)
                continue
            self._publish_up = True
            self._health_changed(None)
            return

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe this process to `channel`; returns once Redis confirmed it, or once the
        connection was lost (the channel is then subscribed on reconnection)."""
        if self._state is not _State.RUNNING:
            raise InvalidState(f"redis broker is {self._state.value}")
        if channel in self._channels:
            return
        topic = self._keys(channel)[2].encode()
        self._channels[channel] = topic
        self._topics[topic] = channel
        await self._confirm(topic, repr(channel))

    async def listen(self, topic: str, callback: ListenCallback) -> None:
        """Pass every payload PUBLISHed to the pub/sub channel `topic` (taken as is, no
        prefix) to `callback`, on the event loop; returns like `subscribe`."""
        if self._state is not _State.RUNNING:
            raise InvalidState(f"redis broker is {self._state.value}")
        name = topic.encode()
        self._listeners[name] = callback
        await self._confirm(name, topic)

    async def unlisten(self, topic: str) -> None:
        """Stop passing `topic`'s payloads on (nothing more reaches the callback)."""
        name = topic.encode()
        if self._listeners.pop(name, None) is None:
            return
        await self._send_unsubscribe(name, topic)

    async def listen_user(self, user: str) -> None:
        """Receive the direct messages to `user`; returns like `subscribe`."""

        def receive(payload: bytes) -> None:
            self._dispatch_direct(user, payload)

        await self.listen(self._user_topic(user), receive)

    async def unlisten_user(self, user: str) -> None:
        """No more direct messages to `user` here."""
        await self.unlisten(self._user_topic(user))

    def _dispatch_direct(self, user: str, payload: bytes) -> None:
        deliver = self._deliver_direct
        if deliver is None:
            return
        parts = payload.split(b" ", 2)
        if len(parts) != 3 or parts[0] not in (_TEXT, _BINARY):
            log.warning("malformed direct message to %r ignored: %r", user, payload[:100])
            return
        kind, message_id, data = parts
        try:
            deliver(
                user,
                message_id.decode("ascii", "replace"),
                data.decode("utf-8", "surrogatepass") if kind == _TEXT else data,
            )
        except Exception:
            log.exception("direct message callback failed")

    async def _confirm(self, topic: bytes, channel: str) -> None:
        """SUBSCRIBE `topic` and wait for Redis to confirm it (see `subscribe`)."""
        connection = self._subscriber
        if connection is None:
            return  # the reader subscribes it when it reconnects
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(topic, []).append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._write_lock:
                    await connection.send_command("SUBSCRIBE", topic)
                await waiter
        except TimeoutError:
            log.warning(
                "redis did not confirm the subscription to %s in %s s", channel, self.timeout
            )
        except _CONNECTION_ERRORS as exc:
            # The reader sees the same loss and subscribes again on reconnection.
            log.debug("subscription to %s interrupted: %s", channel, exc)
        finally:
            waiters = self._waiters.get(topic)
            if waiters is not None:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    del self._waiters[topic]

    async def unsubscribe(self, channel: str) -> None:
        """This process stops receiving `channel` (nothing of it is delivered from now on)."""
        topic = self._channels.pop(channel, None)
        if topic is None:
            return
        self._topics.pop(topic, None)
        await self._send_unsubscribe(topic, repr(channel))

    async def _send_unsubscribe(self, topic: bytes, channel: str) -> None:
        connection = self._subscriber
        if connection is None:
            return  # not subscribed on the next connection
        try:
            async with self._write_lock:
                await connection.send_command("UNSUBSCRIBE", topic)
        except _CONNECTION_ERRORS as exc:
            # The reader sees the same loss; the next connection leaves this channel out.
            log.debug("unsubscription from %s interrupted: %s", channel, exc)

    async def _open_subscriber(self) -> AbstractConnection:
        make_connection = self._client.connection_pool.make_connection
        connection: AbstractConnection = make_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            # From here on `subscribe` sends on this connection itself; a channel both in
            # the snapshot and subscribed meanwhile is subscribed twice, which Redis ignores.
            self._subscriber = connection
            topics = [*self._channels.values(), *self._listeners]
            if topics:
                self._unconfirmed = set(topics)
                async with self._write_lock:
                    await connection.send_command("SUBSCRIBE", *topics)
        except BaseException:
            self._subscriber = None
            self._unconfirmed = set()
            await connection.disconnect(nowait=True)
            raise
        return connection

    async def _read_loop(self) -> None:
        connection = self._subscriber
        failures = 0
        while True:
            if connection is None:
                await asyncio.sleep(self._backoff(failures))
                failures += 1
                try:
                    connection = await self._open_subscriber()
                except _CONNECTION_ERRORS as exc:
                    log.debug("redis at %s still unavailable: %s", self._where, exc)
                    continue
                failures = 0
                self._subscribe_up = True
                self._health_changed(None)
                self._resubscribed = frozenset(self._channels)
                self._notify_resubscribed()
            try:
                await self._read(connection)
            except _CONNECTION_ERRORS as exc:
                self._subscriber = None
                self._subscribe_up = False
                self._health_changed(exc)
                self._release_waiters()
                await connection.disconnect(nowait=True)
                connection = None

    async def _read(self, connection: AbstractConnection) -> None:
        """Dispatch what the subscription connection brings, until it fails."""
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
            if kind == b"message":
                listener = self._listeners.get(response[1])
                if listener is not None:
                    try:
                        listener(response[2])
                    except Exception:
                        log.exception("listen callback failed")
                else:
                    self._dispatch(response[1], response[2])
            elif kind == b"subscribe":
                self._confirmed(response[1])

    def _dispatch(self, topic: bytes, payload: bytes) -> None:
        channel = self._topics.get(topic)
        deliver = self._deliver
        if channel is None or deliver is None:
            return  # unsubscribed while the message was on its way
        if payload[:1] == b"!":
            self._dispatch_presence(channel, payload)
            return
        try:
            epoch, offset, kind, data = payload.split(b" ", 3)
            message = Message(
                channel,
                epoch.decode("ascii"),
                int(offset),
                data.decode("utf-8", "surrogatepass") if kind == _TEXT else data,
            )
        except ValueError:
            log.warning("malformed message on %r ignored: %r", channel, payload[:100])
            return
        try:
            deliver(message)
        except Exception:
            log.exception("deliver callback failed")

    def _dispatch_presence(self, channel: str, payload: bytes) -> None:
        deliver = self._presence.deliver
        if deliver is None:
            return
        try:
            event = parse_event(channel, payload)
        except ValueError:
            log.warning("malformed presence event on %r ignored: %r", channel, payload[:100])
            return
        try:
            deliver(event)
        except Exception:
            log.exception("presence callback failed")

    # -- presence ---------------------------------------------------------------------------

    def presence_join(self, channel: str, member: str, entry: bytes) -> None:
        self._presence.join(channel, member, entry)

    def presence_leave(self, channel: str, member: str) -> None:
        self._presence.leave(channel, member)

    async def presence(self, channel: str, limit: int) -> PresenceSnapshot:
        """The channel's members and count (see `Broker.presence`).

        Raises:
            Unavailable: Redis cannot be reached.
        """
        if self._state is not _State.RUNNING:
            raise InvalidState(f"redis broker is {self._state.value}")
        return await self._presence.snapshot(channel, limit)

    def _confirmed(self, topic: bytes) -> None:
        for waiter in self._waiters.pop(topic, ()):
            if not waiter.done():
                waiter.set_result(None)
        if self._unconfirmed:
            self._unconfirmed.discard(topic)
            if not self._unconfirmed:
                self._notify_resubscribed()

    def _notify_resubscribed(self) -> None:
        channels = self._resubscribed
        if channels is None or self._unconfirmed:
            return
        self._resubscribed = None
        callback = self.on_resubscribed
        if channels and callback is not None:
            try:
                callback(channels)
            except Exception:
                log.exception("on_resubscribed callback failed")

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for waiter in futures:
                if not waiter.done():
                    waiter.set_result(None)
        self._unconfirmed = set()

    # -- positions and history --------------------------------------------------------------

    async def position(self, channel: str) -> Position:
        """The channel's last position; a channel Redis does not know gets a new epoch.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        epoch, offset, _ = await self._query(channel, "", 0, 0)
        return Position(epoch, offset)

    async def history(self, channel: str, since: Position) -> History:
        """At most `history_size` messages after `since`, none older than `history_ttl`.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        epoch, offset, entries = await self._query(
            channel, since.epoch, since.offset, self.history_size
        )
        messages: list[Message] = []
        for _id, fields in reversed(entries):
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            data: Data = values[b"d"]
            if values[b"k"] == _TEXT:
                data = values[b"d"].decode("utf-8", "surrogatepass")
            messages.append(Message(channel, epoch, int(values[b"o"]), data))
        if since.epoch != epoch:
            complete = False
        else:
            complete = offset <= since.offset or (
                bool(messages) and messages[0].offset == since.offset + 1
            )
        return History(messages, complete, Position(epoch, offset))

    async def _query(
        self, channel: str, since_epoch: str, since_offset: int, limit: int
    ) -> tuple[str, int, list[tuple[bytes, list[bytes]]]]:
        if self._state is not _State.RUNNING:
            raise InvalidState(f"redis broker is {self._state.value}")
        meta, history, _topic = self._keys(channel)
        args: list[str | int] = [
            secrets.token_hex(4),
            since_epoch,
            since_offset,
            limit,
            self._channel_ttl_ms,
            self._history_ttl_ms,
        ]
        try:
            epoch, offset, entries = await self._read_script(keys=[meta, history], args=args)
        except _CONNECTION_ERRORS as exc:
            raise Unavailable(f"redis at {self._where} unavailable: {exc}") from exc
        return epoch.decode("ascii"), int(offset), entries

    # -- helpers ----------------------------------------------------------------------------

    def _keys(self, channel: str) -> tuple[str, str, str]:
        """The channel's meta hash, history Stream and pub/sub names (one hash tag)."""
        base = f"{self.prefix}{{{channel}}}"
        return f"{base}:meta", f"{base}:history", base

    def _user_topic(self, user: str) -> str:
        """The pub/sub channel of `user`'s direct messages."""
        return f"{self.prefix}user:{user}"

    def _presence_keys(self, channel: str) -> tuple[str, str, str, str]:
        """The channel's presence hash, sorted set and version, and its pub/sub name."""
        base = f"{self.prefix}{{{channel}}}"
        return f"{base}:pm", f"{base}:pz", f"{base}:pv", base

    def _backoff(self, failures: int) -> float:
        delay = min(self.reconnect_max, self.reconnect_min * 2.0 ** min(failures, 30))
        return delay * (1 - random.random() / 2)

    def _health_changed(self, error: BaseException | None) -> None:
        """Log once when an outage begins and once when both connections are back."""
        healthy = self._publish_up and self._subscribe_up
        now = asyncio.get_running_loop().time()
        if not healthy and not self._outage:
            self._outage = True
            self._outage_began = now
            log.warning(
                "redis at %s: connection lost (%s); reconnecting with backoff %s to %s s",
                self._where,
                error,
                self.reconnect_min,
                self.reconnect_max,
            )
        elif healthy and self._outage:
            self._outage = False
            log.warning(
                "redis at %s: connection restored after %.1f s, %d channels subscribed again",
                self._where,
                now - self._outage_began,
                len(self._channels),
            )
