"""Publishing through Redis: one queue, one sender task, batches pipelined in order.

One Lua script, run with EVALSHA, stores each channel publish atomically: it counts the
offset, appends the message to the channel's Stream, trims it, refreshes the keys' lifetimes
and PUBLISHes it (layout.py has the keys). A direct message to a user is the same script on
the user's inbox (its own keys and bounds, a byte bound too), and shares the queue
(`max_pending`) and its order with channel publishes.

Guaranteed:

- Publishes from one process are stored in the order of their `publish` calls (one queue,
  one sender task, batches pipelined in order on one connection) and each `done` is called
  exactly once: with the message once Redis has stored it, or with `Unavailable`. A direct
  message's `done` gets the message (its inbox position) and PUBLISH's answer: the number
  of processes that received it.
- While the publishing connection is down, a publish fails at once with `Unavailable`.
- A publish with an idempotency key that the script saw for the channel within
  `idempotency_ttl` publishes nothing and answers the first one's position, whichever
  process ran the first (the key is checked and set inside the script, atomically).

Not guaranteed:

- `Unavailable` does not prove a message was not stored: when the connection drops after
  Redis ran the script and before its answer arrived, the message is stored and fanned out
  but its publisher is told `Unavailable`. Publishing again with the same idempotency key
  gives the stored message's position without publishing it twice.
- Per-process order across a `SCRIPT FLUSH` that lands in the middle of a batch: the
  publishes that met NOSCRIPT are run again after the script is loaded, after the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Final, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from ...errors import PushwireError, Unavailable
from ...message import Data, Message
from ..base import DirectCallback, DirectSent, PublishCallback
from .health import CONNECTION_ERRORS, Health
from .layout import Keys, Retention, encode_data
from .scripts import run_batch

__all__ = ["PUBLISH_SCRIPT", "DoneCallback", "Publisher"]

log = logging.getLogger("pushwire.broker.redis")

# KEYS: meta, history[, idempotency key]. ARGV: topic, candidate epoch, kind, data,
# history_size, history_ttl ms, meta ttl ms, idempotency_ttl ms, max bytes (0: no byte
# bound). Returns {epoch, offset, receivers}: the new message's, or (a key seen before) the
# first publish's {epoch, offset}, which publishes nothing. With a byte bound each entry
# starts with `s`, the bytes appended before it in this epoch: the oldest entries go until
# the rest add up to at most max bytes (a message over the bound is not kept at all). The
# meta's `first` is the `s` of the oldest entry when last looked: no entry starts before it,
# so while it is at or past the cut nothing is read (one HGET a publish, the entries read
# once per max bytes published). A user's inbox is such a stream too.
PUBLISH_SCRIPT: Final = """
local meta, history, seen = KEYS[1], KEYS[2], KEYS[3]
if seen then
  local first = redis.call('GET', seen)
  if first then
    local space = string.find(first, ' ', 1, true)
    return {string.sub(first, 1, space - 1), tonumber(string.sub(first, space + 1))}
  end
end
if redis.call('HSETNX', meta, 'epoch', ARGV[2]) == 1 then
  redis.call('DEL', history)
end
local epoch = redis.call('HGET', meta, 'epoch')
local offset = string.format('%d', redis.call('HINCRBY', meta, 'offset', 1))
redis.call('PEXPIRE', meta, ARGV[7])
if tonumber(ARGV[5]) > 0 then
  local limit = tonumber(ARGV[9])
  if limit > 0 then
    local total = redis.call('HINCRBY', meta, 'bytes', #ARGV[4])
    redis.call('XADD', history, 'MAXLEN', '~', ARGV[5], '*',
               's', string.format('%d', total - #ARGV[4]),
               'o', offset, 'k', ARGV[3], 'd', ARGV[4])
    local floor = total - limit
    local start, count = '-', 1
    if floor > 0 and tonumber(redis.call('HGET', meta, 'first') or '0') >= floor then
      floor = 0
    end
    while floor > 0 do
      local batch = redis.call('XRANGE', history, start, '+', 'COUNT', count)
      if #batch == 0 then
        redis.call('DEL', history)
        redis.call('HSET', meta, 'first', total)
        break
      end
      local keep = nil
      for _, entry in ipairs(batch) do
        if tonumber(entry[2][2]) >= floor then
          keep = entry
          break
        end
      end
      if keep then
        redis.call('XTRIM', history, 'MINID', keep[1])
        redis.call('HSET', meta, 'first', keep[2][2])
        break
      end
      start, count = '(' .. batch[#batch][1], 64
    end
  else
    redis.call('XADD', history, 'MAXLEN', '~', ARGV[5], '*',
               'o', offset, 'k', ARGV[3], 'd', ARGV[4])
  end
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
                 - tonumber(ARGV[6])
  if cutoff > 0 then
    redis.call('XTRIM', history, 'MINID', string.format('%d', cutoff))
  end
  redis.call('PEXPIRE', history, ARGV[6])
end
local receivers = redis.call('PUBLISH', ARGV[1],
                             epoch .. ' ' .. offset .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
if seen then
  redis.call('SET', seen, epoch .. ' ' .. offset, 'NX', 'PX', ARGV[8])
end
return {epoch, tonumber(offset), receivers}
"""

#: What a publish (`PublishCallback`) or a direct message (`DirectCallback`) is done with.
DoneCallback: TypeAlias = PublishCallback | DirectCallback

# channel (or user), data as given, kind, data as bytes, done, direct (to a user),
# idempotency key (None: none)
_Publish: TypeAlias = tuple[str, Data, bytes, bytes, DoneCallback | None, bool, str | None]


class Publisher:
    """The publish queue and the task that sends it (`run`), on the client's connections.

    Args:
        client: the broker's Redis client.
        keys: the names in Redis.
        retention: what the publish script keeps of a channel.
        inbox: what it keeps of a user's inbox.
        health: where the publishing connection's state is kept and reported.
        max_pending: publishes waiting to be sent; one more fails with `Unavailable`.
        max_batch: publishes sent per round trip to Redis.
        max_batch_bytes: data bytes per round trip; a batch closes once over it, so one
            larger message still goes alone.
    """

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        retention: Retention,
        inbox: Retention,
        health: Health,
        *,
        max_pending: int,
        max_batch: int,
        max_batch_bytes: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self._health = health
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        # SPUBLISH in place of PUBLISH on a Redis Cluster (layout.py).
        self._source = keys.script(PUBLISH_SCRIPT)
        self._script = client.register_script(self._source)
        #: What is kept of each channel (`RedisBroker.set_history_policy` changes it).
        self.retention_of: Callable[[str], Retention] = lambda _channel: retention
        self._inbox = inbox
        self._queue: deque[_Publish] = deque()
        self._in_flight: list[_Publish] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        health.pending = self._queue.__len__

    async def load_script(self) -> None:
        """Load the publish script into Redis (`run` loads it again when Redis forgot it).

        Raises:
            redis.exceptions.ConnectionError: and the other `CONNECTION_ERRORS`.
        """
        await self._client.script_load(self._source)

    def enqueue(
        self,
        target: str,
        data: Data,
        done: DoneCallback | None,
        *,
        direct: bool,
        idempotency_key: str | None = None,
    ) -> None:
        """Queue `data` for the channel `target`, or for the user `target` when `direct`
        (`idempotency_key`: see `Broker.publish`).

        `done` gets `Unavailable` at once when Redis is down or `max_pending` publishes wait.
        """
        error: PushwireError | None = None
        if not self._health.publishing:
            error = Unavailable(f"redis at {self._health.where} unavailable")
        elif len(self._queue) >= self.max_pending:
            error = Unavailable(f"publish queue full ({len(self._queue)} pending)")
        if error is not None:
            self.refuse(target, done, error, direct=direct)
            return
        kind, payload = encode_data(data)
        self._queue.append((target, data, kind, payload, done, direct, idempotency_key))
        self._idle.clear()
        self._wakeup.set()

    def refuse(
        self, target: str, done: DoneCallback | None, error: PushwireError, *, direct: bool
    ) -> None:
        """Tell `done` of `error` at once; without one, log it (unless during an outage,
        which is logged already)."""
        if done is not None:
            done(error)
        elif not self._health.outage:
            what = "direct message to user" if direct else "publish to"
            log.warning("%s %r dropped: %s", what, target, error)

    async def drain(self, timeout: float) -> None:
        """Wait for what is queued to be sent, for up to `timeout` seconds (not at all while
        the publishing connection is down)."""
        if self._health.publishing and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()

    def fail_all(self, error: PushwireError) -> None:
        """Fail whatever was not sent (once the sender task is stopped)."""
        self._fail(self._in_flight, error)
        self._fail(self._queue, error)
        self._in_flight = []
        self._queue.clear()

    async def run(self) -> None:
        """Send the queue, batch after batch, until cancelled; restore the connection when
        it is lost (what was queued then gets `Unavailable`)."""
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
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                await self._send(batch)
                health = self._health
                health.round_trips += 1
                health.round_trip_seconds += loop.time() - began
            except CONNECTION_ERRORS as exc:
                self._health.publishing = False
                self._health.changed(exc)
                error = Unavailable(f"redis at {self._health.where} unavailable: {exc}")
                self._fail(batch, error)
                self._fail(queue, error)
                queue.clear()
                self._in_flight = []
                await self._health.reconnect(self._restore)
                self._health.publishing = True
                self._health.changed(None)
            self._in_flight = []

    async def _restore(self) -> None:
        await self._client.ping()
        await self._client.script_load(self._source)

    async def _send(self, batch: list[_Publish]) -> None:
        """Run the publish script for each of `batch` (on a channel, or a user's inbox), in
        order, in one round trip."""
        forgotten = await run_batch(self._client, self._source, batch, self._add, self._finish)
        if forgotten:
            self._fail(forgotten, Unavailable("redis keeps forgetting the publish script"))

    def _add(self, pipe: Pipeline, item: _Publish) -> None:
        target, _data, kind, payload, _done, direct, idempotency_key = item
        if direct:
            meta, history, topic = self._keys.inbox(target)
            inbox = self._inbox
            pipe.evalsha(
                self._script.sha,
                2,
                meta,
                history,
                topic,
                secrets.token_hex(4),
                kind,
                payload,
                inbox.history_size,
                inbox.history_ttl_ms,
                inbox.channel_ttl_ms,
                inbox.idempotency_ttl_ms,
                inbox.max_bytes,
            )
            return
        meta, history, topic = self._keys.channel(target)
        retention = self.retention_of(target)
        keys = [meta, history]
        if idempotency_key is not None:
            keys.append(self._keys.idempotency(target, idempotency_key))
        pipe.evalsha(
            self._script.sha,
            len(keys),
            *keys,
            topic,
            secrets.token_hex(4),
            kind,
            payload,
            retention.history_size,
            retention.history_ttl_ms,
            retention.channel_ttl_ms,
            retention.idempotency_ttl_ms,
            retention.max_bytes,
        )

    @staticmethod
    def _finish(item: _Publish, result: object) -> None:
        target, data, _kind, _payload, done, direct, _key = item
        outcome: Message | DirectSent | PushwireError
        if isinstance(result, list):
            message = Message(target, result[0].decode("ascii"), result[1], data)
            outcome = DirectSent(message, int(result[2])) if direct else message
        elif isinstance(result, ResponseError):
            outcome = Unavailable(f"redis refused the publish: {result}")
        else:
            outcome = Unavailable(f"unexpected answer from redis: {result!r}")
        if done is None:
            if isinstance(outcome, PushwireError):
                what = "direct message to user" if direct else "publish to"
                log.warning("%s %r failed: %s", what, target, outcome)
            return
        try:
            # A Message for a publish, DirectSent for a direct message.
            done(outcome)  # type: ignore[arg-type]
        except Exception:
            log.exception("publish callback failed")

    @staticmethod
    def _fail(items: list[_Publish] | deque[_Publish], error: PushwireError) -> None:
        for target, _data, _kind, _payload, done, _direct, _key in items:
            if done is None:
                log.debug("publish to %r failed: %s", target, error)
                continue
            try:
                done(error)
            except Exception:
                log.exception("publish callback failed")
