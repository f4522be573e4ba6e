"""Presence in Redis: every node sees the same members, and a dead node's members expire.

A channel's presence is three keys beside its messages' (layout.py): its members' entries,
their expiry times and its version. Every key lives twice `presence_ttl` past the last change
or refresh (Redis deletes an empty hash or sorted set at once); so the version keeps growing
while anybody comes and goes, and only starts again at 1 once a channel was empty for that
long, or Redis lost its data.

One Lua script does every operation (change, read, sweep), so each is atomic with the
versions and counts it announces; each begins by sweeping the channel's expired members (as
many as it has room for), then makes the changes it carries. Its changes are announced on
the channel's pub/sub name, the one its messages travel on, in ONE message: `!` then a line
`<version> <count> j|l <entry>` per join or leave, in order (no Redis subscription per
session or per member; a receiving node hands each line on as its own event).

Bounded: no script call touches more than `batch` members (`presence_batch`, 500). A
process's joins, leaves and refreshes of a channel go in change calls of up to that many
(all it queued while its last pipeline was in flight: the busier, the fuller); a sweep
removes as many expired members as the call has room for and says whether more are left,
and the process then sweeps again, a batch per call, until none is. A node's goodbye, or
the expiry of a dead node's members, is so many short scripts, never one that holds Redis
for seconds (Redis answers BUSY to everyone while a script runs over its time limit).

Batched: the operations a process asks for in one turn go to Redis in one pipeline, in call
order per channel, on one task; every `presence_ttl / 3` seconds one more pipeline
refreshes all of this process's members (one script call per channel and batch) and sweeps
those channels. A refresh also adds back a member Redis lost (a restart without
persistence, an expiry during a long stall), announcing it as a join.

Not guaranteed: a join or leave that could not reach Redis is not retried as such; the next
refresh adds a missing member back, and a member whose leave was lost expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final, Literal, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from ...clock import LOOP_CLOCK, Clock, Timer
from ...errors import Unavailable
from ...presence import PresenceEvent, PresenceSnapshot
from ..base import PresenceCallback
from .health import CONNECTION_ERRORS
from .layout import Keys
from .scripts import run_batch

__all__ = ["PRESENCE_SCRIPT", "RedisPresence", "parse_events"]

log = logging.getLogger("pushwire.broker.redis")

# KEYS: entries hash, expiry zset, version. ARGV: topic, ttl ms, batch, op (change, read,
# sweep), limit, then (change) triples: kind (j: join or refresh, l: leave), member, entry
# (empty for a leave). At most `batch` members are touched: first as many expired members
# swept as the batch has room for beside the changes, then the changes. Every change is
# announced in ONE message: `!` then a line `<version> <count> j|l <entry>` per change.
# Returns {version, count, entries (read only), more: 1 when expired members are left}.
PRESENCE_SCRIPT: Final = """
local entries, expiries, version = KEYS[1], KEYS[2], KEYS[3]
local topic, ttl, batch, op = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lines = {}
local function announce(kind, entry)
  local v = redis.call('INCR', version)
  local c = redis.call('ZCARD', expiries)
  lines[#lines + 1] = v .. ' ' .. c .. ' ' .. kind .. ' ' .. entry
end
local function remove(member)
  local entry = redis.call('HGET', entries, member)
  if entry then
    redis.call('ZREM', expiries, member)
    redis.call('HDEL', entries, member)
    announce('l', entry)
  end
end
local changes = 0
if op == 'change' then
  changes = (#ARGV - 5) / 3
end
local room = math.max(0, batch - changes)
local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, room + 1)
for i = 1, math.min(room, #expired) do
  remove(expired[i])
end
if op == 'change' then
  for i = 6, #ARGV, 3 do
    if ARGV[i] == 'j' then
      local added = redis.call('ZADD', expiries, now + ttl, ARGV[i + 1])
      if added == 1 then
        redis.call('HSET', entries, ARGV[i + 1], ARGV[i + 2])
        announce('j', ARGV[i + 2])
      end
    else
      remove(ARGV[i + 1])
    end
  end
end
local more = 0
if #expired > room then more = 1 end
if #lines > 0 then
  redis.call('PUBLISH', topic, '!' .. table.concat(lines, '\\n'))
end
local count = redis.call('ZCARD', expiries)
redis.call('PEXPIRE', version, 2 * ttl)
if count == 0 then
  return {tonumber(redis.call('GET', version) or 0), 0, {}, more}
end
redis.call('PEXPIRE', entries, 2 * ttl)
redis.call('PEXPIRE', expiries, 2 * ttl)
local listed = {}
if op == 'read' then
  local members = redis.call('ZRANGE', expiries, 0, tonumber(ARGV[5]) - 1)
  if #members > 0 then
    listed = redis.call('HMGET', entries, unpack(members))
  end
end
return {tonumber(redis.call('GET', version) or 0), count, listed, more}
"""

_Kind: TypeAlias = Literal["change", "read", "sweep"]
# channel, op, its arguments (change: kind, member, entry triples), who awaits its answer.
_Op: TypeAlias = tuple[str, _Kind, list[bytes], "asyncio.Future[object] | None"]


def parse_events(channel: str, payload: bytes) -> list[PresenceEvent]:
    """The presence changes a message on the channel's pub/sub carries (`!` checked).

    Raises:
        ValueError: it is malformed.
    """
    events = []
    for line in payload[1:].split(b"\n"):
        version, count, kind, entry = line.split(b" ", 3)
        if kind not in (b"j", b"l"):
            raise ValueError(f"unknown presence event kind {kind!r}")
        events.append(
            PresenceEvent(
                channel, int(version), int(count), "join" if kind == b"j" else "leave", entry
            )
        )
    return events


class RedisPresence:
    """This process's side of presence in Redis: its members, their refresh, the scripts.

    Args:
        client: the broker's Redis client (its connection pool).
        keys: the names in Redis.
        ttl: seconds an entry lives unrefreshed (`presence_ttl`); refreshed every third.
        timeout: seconds the goodbye at `close` may take.
        batch: members one script call touches at most (`presence_batch`): joins, leaves
            and refreshes are sent in script calls of up to this many, and expired members
            swept this many at a time, so that no script holds Redis for long.
        clock: when refreshes are due (Redis keeps the entries' own expiry times).
    """

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        ttl: float,
        timeout: float,
        batch: int = 500,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"presence_ttl must be > 0, not {ttl}")
        if batch < 1:
            raise ValueError(f"presence_batch must be >= 1, not {batch}")
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self.timeout = timeout
        self.batch = batch
        self.clock = clock
        self._ttl_ms = str(max(1, round(ttl * 1000)))
        self._batch = str(batch)
        self._source = keys.script(PRESENCE_SCRIPT)  # SPUBLISH on a Redis Cluster
        self._script = client.register_script(self._source)
        self.deliver: PresenceCallback | None = None
        #: This process's members: channel -> member -> entry.
        self.members: dict[str, dict[str, bytes]] = {}
        self._ops: list[_Op] = []
        # The change op each channel's next changes join (its index in `_ops`), while it
        # has room and no read of the channel follows it.
        self._open: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._refresh_due = False
        self._refresh_timer: Timer | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pushwire redis presence")
        self._refresh_timer = self.clock.call_later(self.ttl / 3, self._refresh)

    def _refresh(self) -> None:
        """Every third of the TTL: the next pipeline refreshes every member of this process."""
        self._refresh_due = True
        self._wakeup.set()
        self._refresh_timer = self.clock.call_later(self.ttl / 3, self._refresh)

    async def close(self) -> None:
        """Say goodbye (every member of this process leaves, for up to `timeout` seconds),
        then stop."""
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        for channel in list(self.members):
            for member in list(self.members.get(channel, ())):
                self.leave(channel, member)
        if self._task is not None and not self._idle.is_set():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._idle.wait()
            except TimeoutError:
                log.warning(
                    "presence goodbye unfinished after %s s: the members left expire", self.timeout
                )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _channel, _op, _args, future in self._ops:
            if future is not None and not future.done():
                future.set_exception(Unavailable("redis broker closed"))
        self._ops = []
        self._open = {}

    def join(self, channel: str, member: str, entry: bytes) -> None:
        self.members.setdefault(channel, {})[member] = entry
        self._change(channel, [b"j", member.encode(), entry])

    def leave(self, channel: str, member: str) -> None:
        members = self.members.get(channel)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self.members[channel]
        self._change(channel, [b"l", member.encode(), b""])

    async def snapshot(self, channel: str, limit: int) -> PresenceSnapshot:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue(channel, "read", [str(limit).encode()], future)
        result = await future
        assert isinstance(result, list)
        version, count, entries, _more = result
        return PresenceSnapshot(channel, int(version), int(count), [e for e in entries if e])

    def receive(self, channel: str, payload: bytes) -> None:
        """A presence message from the channel's pub/sub: its changes go to `deliver`, in
        order; a malformed one is logged and dropped, a failing callback never stops us."""
        deliver = self.deliver
        if deliver is None:
            return
        try:
            events = parse_events(channel, payload)
        except ValueError:
            log.warning("malformed presence event on %r ignored: %r", channel, payload[:100])
            return
        for event in events:
            try:
                deliver(event)
            except Exception:
                log.exception("presence event callback failed")

    def _change(self, channel: str, triple: list[bytes]) -> None:
        """Queue a join, refresh or leave: into the channel's open change op while it has
        room (one script call, one pub/sub message for many changes), else a new one."""
        if self._task is None:
            return
        index = self._open.get(channel)
        if index is not None:
            args = self._ops[index][2]
            if len(args) < 3 * self.batch:
                args.extend(triple)
                return
        self._open[channel] = len(self._ops)
        self._queue(channel, "change", [b"0", *triple], None)

    def _queue(
        self,
        channel: str,
        op: _Kind,
        args: list[bytes],
        future: asyncio.Future[object] | None,
    ) -> None:
        if self._task is None:
            if future is not None:
                future.set_exception(Unavailable("redis broker is not running"))
            return
        if op != "change":
            self._open.pop(channel, None)  # later changes come after this read or sweep
        self._ops.append((channel, op, args, future))
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            if not self._ops and not self._refresh_due:
                self._idle.set()
                await self._wakeup.wait()
                self._wakeup.clear()
            if self._refresh_due:
                self._refresh_due = False
                for channel, members in self.members.items():
                    for member, entry in members.items():
                        self._change(channel, [b"j", member.encode(), entry])
            ops, self._ops, self._open = self._ops, [], {}
            if ops:
                try:
                    await self._send(ops)
                except Exception:
                    # Never stop refreshing: this process's members would expire.
                    log.exception("presence update failed")
                    for _channel, _op, _args, future in ops:
                        if future is not None and not future.done():
                            future.set_exception(Unavailable("presence update failed"))

    async def _send(self, ops: list[_Op]) -> None:
        """Run the script for each op, in order, in one round trip."""
        try:
            if await run_batch(self._client, self._source, ops, self._add, self._finish):
                raise Unavailable("redis keeps forgetting the presence script")
        except (RedisError, *CONNECTION_ERRORS, Unavailable) as exc:
            # One line: a Redis that is down or busy (a script over its time limit) is
            # reported by the health check; the next refresh puts back what was lost.
            log.warning("presence update of %d script calls failed: %s", len(ops), exc)
            for _channel, _op, _args, future in ops:
                if future is not None and not future.done():
                    future.set_exception(Unavailable(f"redis unavailable: {exc}"))

    def _add(self, pipe: Pipeline, item: _Op) -> None:
        channel, op, args, _future = item
        entries, expiries, version, topic = self._keys.presence(channel)
        pipe.evalsha(
            self._script.sha,
            3,
            entries,
            expiries,
            version,
            topic,
            self._ttl_ms,
            self._batch,
            op,
            *args,
        )

    def _finish(self, item: _Op, result: object) -> None:
        channel, op, _args, future = item
        if isinstance(result, list):
            if result[3]:
                self._queue(channel, "sweep", [b"0"], None)  # more expired: the next batch
            if future is not None and not future.done():
                future.set_result(result)
            return
        error = Unavailable(f"redis refused the presence {op} on {channel!r}: {result}")
        if future is not None and not future.done():
            future.set_exception(error)
        else:
            log.warning("%s", error)
