"""Publishing through Redis: one queue, one sender task, batches pipelined in order.

One Lua script, run with EVALSHA, stores each channel publish atomically: it counts the
offset, appends the message to the channel's Stream, trims it, refreshes the keys' lifetimes
and PUBLISHes it (layout.py has the keys). A direct message to a user is the same script on
the user's inbox (its own keys and bounds, a byte bound too), and shares the queue
(`max_pending`) and its order with channel publishes.

A batch (up to `max_batch` publishes, one round trip) runs the script once per run of
consecutive publishes to one channel or inbox, for all of them in order: a busy channel's
publishes cost Redis one script call and its lifetime and age trim updates once per batch,
not per message, and each publish still gets its own answer (position, or the first
publish's under an idempotency key seen before). Each message is still PUBLISHed on its own.

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
from redis.exceptions import MovedError, ResponseError

from ...errors import PushwireError, Unavailable
from ...message import Data, Message
from ..base import DirectCallback, DirectSent, PublishCallback
from .health import CONNECTION_ERRORS, MOVED_ERRORS, Health
from .layout import Keys, Retention, encode_data
from .scripts import run_batch

__all__ = ["PUBLISH_SCRIPT", "DoneCallback", "Publisher"]

log = logging.getLogger("pushwire.broker.redis")

# One run stores a group of messages to one channel (or inbox), in order, each as one
# publish on its own would. KEYS: meta, history, then the group's idempotency keys. ARGV:
# topic, candidate epoch, history_size, history_ttl ms, meta ttl ms, idempotency_ttl ms, max
# bytes (0: no byte bound), then per message: kind, data, the KEYS index of its idempotency
# key (0: none). Returns per message {epoch, offset, receivers}: the new message's, or (a
# key seen before) the first publish's epoch and offset with receivers -1, which publishes
# nothing. With a byte bound each entry starts with `s`, the bytes appended before it in
# this epoch: the oldest entries go until the rest add up to at most max bytes (a message
# over the bound is not kept at all). The meta's `first` is the `s` of the oldest entry when
# last looked: no entry starts before it, so while it is at or past the cut nothing is read
# (one HGET a publish, the entries read once per max bytes published). A user's inbox is
# such a stream too. The lifetimes and the age trim are the same for every message of a run
# (Redis's clock does not move within it), so they are done once, after the last.
PUBLISH_SCRIPT: Final = """
local meta, history = KEYS[1], KEYS[2]
local size, limit = tonumber(ARGV[3]), tonumber(ARGV[7])
local epoch = nil
local out = {}
for i = 8, #ARGV, 3 do
  local data, key = ARGV[i + 1], tonumber(ARGV[i + 2])
  local seen = nil
  local first = nil
  if key > 0 then
    seen = KEYS[key]
    first = redis.call('GET', seen)
  end
  if first then
    local space = string.find(first, ' ', 1, true)
    table.insert(out, string.sub(first, 1, space - 1))
    table.insert(out, tonumber(string.sub(first, space + 1)))
    table.insert(out, -1)
  else
    if not epoch then
      if redis.call('HSETNX', meta, 'epoch', ARGV[2]) == 1 then
        redis.call('DEL', history)
      end
      epoch = redis.call('HGET', meta, 'epoch')
    end
    local offset = string.format('%d', redis.call('HINCRBY', meta, 'offset', 1))
    if size > 0 then
      if limit > 0 then
        local total = redis.call('HINCRBY', meta, 'bytes', #data)
        redis.call('XADD', history, 'MAXLEN', '~', size, '*',
                   's', string.format('%d', total - #data),
                   'o', offset, 'k', ARGV[i], 'd', data)
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
        redis.call('XADD', history, 'MAXLEN', '~', size, '*',
                   'o', offset, 'k', ARGV[i], 'd', data)
      end
    end
    local receivers = redis.call('PUBLISH', ARGV[1],
                                 epoch .. ' ' .. offset .. ' ' .. ARGV[i] .. ' ' .. data)
    if seen then
      redis.call('SET', seen, epoch .. ' ' .. offset, 'NX', 'PX', ARGV[6])
    end
    table.insert(out, epoch)
    table.insert(out, tonumber(offset))
    table.insert(out, receivers)
  end
end
if epoch then
  redis.call('PEXPIRE', meta, ARGV[5])
  if size > 0 then
    local now = redis.call('TIME')
    local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
                   - tonumber(ARGV[4])
    if cutoff > 0 then
      redis.call('XTRIM', history, 'MINID', string.format('%d', cutoff))
    end
    redis.call('PEXPIRE', history, ARGV[4])
  end
end
return out
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
        """Run the publish script for `batch` in one round trip: once per run of
        consecutive publishes to one channel (or one user's inbox), in order."""
        groups: list[list[_Publish]] = []
        for item in batch:
            if groups and groups[-1][0][0] == item[0] and groups[-1][0][5] == item[5]:
                groups[-1].append(item)
            else:
                groups.append([item])
        forgotten = await run_batch(self._client, self._source, groups, self._add, self._finish)
        for group in forgotten:
            self._fail(group, Unavailable("redis keeps forgetting the publish script"))

    def _add(self, pipe: Pipeline, group: list[_Publish]) -> None:
        target, direct = group[0][0], group[0][5]
        if direct:
            meta, history, topic = self._keys.inbox(target)
            retention = self._inbox
        else:
            meta, history, topic = self._keys.channel(target)
            retention = self.retention_of(target)
        keys = [meta, history]
        messages: list[bytes | str | int] = []
        for _target, _data, kind, payload, _done, _direct, idempotency_key in group:
            index = 0
            if idempotency_key is not None and not direct:
                keys.append(self._keys.idempotency(target, idempotency_key))
                index = len(keys)  # Lua counts from 1
            messages += (kind, payload, index)
        pipe.evalsha(
            self._script.sha,
            len(keys),
            *keys,
            topic,
            secrets.token_hex(4),
            retention.history_size,
            retention.history_ttl_ms,
            retention.channel_ttl_ms,
            retention.idempotency_ttl_ms,
            retention.max_bytes,
            *messages,
        )

    def _finish(self, group: list[_Publish], result: object) -> None:
        error: PushwireError | None = None
        if isinstance(result, MOVED_ERRORS):
            # The script did not run: that node does not serve the slot (now).
            self._health.moved(result)
            what = "moved" if isinstance(result, MovedError) else "moving"
            error = Unavailable(f"redis cluster slot {what} to another node ({result}): retry")
        elif isinstance(result, ResponseError):
            error = Unavailable(f"redis refused the publish: {result}")
        elif not isinstance(result, list) or len(result) != 3 * len(group):
            error = Unavailable(f"unexpected answer from redis: {result!r}")
        for index, item in enumerate(group):
            target, data, _kind, _payload, done, direct, _key = item
            outcome: Message | DirectSent | PushwireError
            if error is not None:
                outcome = error
            else:
                assert isinstance(result, list)
                epoch, offset, receivers = result[3 * index : 3 * index + 3]
                message = Message(target, epoch.decode("ascii"), offset, data)
                outcome = DirectSent(message, int(receivers)) if direct else message
            self._tell(target, done, direct, outcome)

    @staticmethod
    def _tell(
        target: str,
        done: DoneCallback | None,
        direct: bool,
        outcome: Message | DirectSent | PushwireError,
    ) -> None:
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
