"""Presence in Redis: every node sees the same members, and a dead node's members expire.

A channel's presence is three keys beside its messages' (layout.py): its members' entries,
their expiry times and its version. Every key lives twice `presence_ttl` past the last change
or refresh (Redis deletes an empty hash or sorted set at once); so the version keeps growing
while anybody comes and goes, and only starts again at 1 once a channel was empty for that
long, or Redis lost its data.

One Lua script does every operation (join, refresh, leave, read), so each is atomic with the
version and count it announces; each begins by sweeping the channel's expired members. A join
or leave is announced on the channel's pub/sub name, the one its messages travel on, as
`!<version> <count> j|l <entry>`: no Redis subscription per session or per member.

Batched: the operations a process asks for in one turn go to Redis in one pipeline, in call
order, on one task; every `presence_ttl / 3` seconds one more pipeline refreshes all of this
process's members (one script call per channel) and sweeps those channels. A refresh also
adds back a member Redis lost (a restart without persistence, an expiry during a long
stall), announcing it as a join.

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

from ...clock import LOOP_CLOCK, Clock, Timer
from ...errors import Unavailable
from ...presence import PresenceEvent, PresenceSnapshot
from ..base import PresenceCallback
from .health import CONNECTION_ERRORS
from .layout import Keys
from .scripts import run_batch

__all__ = ["PRESENCE_SCRIPT", "RedisPresence", "parse_event"]

log = logging.getLogger("pushwire.broker.redis")

# KEYS: entries hash, expiry zset, version. ARGV: topic, ttl ms, op (join, refresh, leave,
# read), limit, then members (leave) or member/entry pairs (join, refresh).
# Returns {version, count, entries (read only)}.
PRESENCE_SCRIPT: Final = """
local entries, expiries, version = KEYS[1], KEYS[2], KEYS[3]
local topic, ttl, op = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local function announce(kind, entry)
  local v = redis.call('INCR', version)
  local c = redis.call('ZCARD', expiries)
  redis.call('PUBLISH', topic, '!' .. v .. ' ' .. c .. ' ' .. kind .. ' ' .. entry)
end
local function remove(member)
  local entry = redis.call('HGET', entries, member)
  if entry then
    redis.call('ZREM', expiries, member)
    redis.call('HDEL', entries, member)
    announce('l', entry)
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', expiries, '-inf', now)) do
  remove(member)
end
if op == 'join' or op == 'refresh' then
  for i = 5, #ARGV, 2 do
    local added = redis.call('ZADD', expiries, now + ttl, ARGV[i])
    if added == 1 then
      redis.call('HSET', entries, ARGV[i], ARGV[i + 1])
      announce('j', ARGV[i + 1])
    end
  end
elseif op == 'leave' then
  for i = 5, #ARGV do
    remove(ARGV[i])
  end
end
local count = redis.call('ZCARD', expiries)
redis.call('PEXPIRE', version, 2 * ttl)
if count == 0 then
  return {tonumber(redis.call('GET', version) or 0), 0, {}}
end
redis.call('PEXPIRE', entries, 2 * ttl)
redis.call('PEXPIRE', expiries, 2 * ttl)
local listed = {}
if op == 'read' then
  local members = redis.call('ZRANGE', expiries, 0, tonumber(ARGV[4]) - 1)
  if #members > 0 then
    listed = redis.call('HMGET', entries, unpack(members))
  end
end
return {tonumber(redis.call('GET', version) or 0), count, listed}
"""

_Op: TypeAlias = tuple[
    str, Literal["join", "refresh", "leave", "read"], list[bytes], "asyncio.Future[object] | None"
]


def parse_event(channel: str, payload: bytes) -> PresenceEvent:
    """A presence announcement from the channel's pub/sub (`!` already checked).

    Raises:
        ValueError: it is malformed.
    """
    version, count, kind, entry = payload[1:].split(b" ", 3)
    if kind not in (b"j", b"l"):
        raise ValueError(f"unknown presence event kind {kind!r}")
    return PresenceEvent(
        channel, int(version), int(count), "join" if kind == b"j" else "leave", entry
    )


class RedisPresence:
    """This process's side of presence in Redis: its members, their refresh, the scripts.

    Args:
        client: the broker's Redis client (its connection pool).
        keys: the names in Redis.
        ttl: seconds an entry lives unrefreshed (`presence_ttl`); refreshed every third.
        timeout: seconds the goodbye at `close` may take.
        clock: when refreshes are due (Redis keeps the entries' own expiry times).
    """

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        ttl: float,
        timeout: float,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"presence_ttl must be > 0, not {ttl}")
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self._ttl_ms = str(max(1, round(ttl * 1000)))
        self._source = keys.script(PRESENCE_SCRIPT)  # SPUBLISH on a Redis Cluster
        self._script = client.register_script(self._source)
        self.deliver: PresenceCallback | None = None
        #: This process's members: channel -> member -> entry.
        self.members: dict[str, dict[str, bytes]] = {}
        self._ops: list[_Op] = []
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
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _channel, _op, _args, future in self._ops:
            if future is not None and not future.done():
                future.set_exception(Unavailable("redis broker closed"))
        self._ops = []

    def join(self, channel: str, member: str, entry: bytes) -> None:
        self.members.setdefault(channel, {})[member] = entry
        self._queue(channel, "join", [member.encode(), entry], None)

    def leave(self, channel: str, member: str) -> None:
        members = self.members.get(channel)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self.members[channel]
        self._queue(channel, "leave", [member.encode()], None)

    async def snapshot(self, channel: str, limit: int) -> PresenceSnapshot:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue(channel, "read", [], future, limit)
        result = await future
        assert isinstance(result, list)
        version, count, entries = result
        return PresenceSnapshot(channel, int(version), int(count), [e for e in entries if e])

    def _queue(
        self,
        channel: str,
        op: Literal["join", "refresh", "leave", "read"],
        args: list[bytes],
        future: asyncio.Future[object] | None,
        limit: int = 0,
    ) -> None:
        if self._task is None:
            if future is not None:
                future.set_exception(Unavailable("redis broker is not running"))
            return
        self._ops.append((channel, op, [str(limit).encode(), *args], future))
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
                    pairs = [part for m, e in members.items() for part in (m.encode(), e)]
                    self._ops.append((channel, "refresh", [b"0", *pairs], None))
            ops, self._ops = self._ops, []
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
        except (*CONNECTION_ERRORS, Unavailable) as exc:
            log.debug("presence update failed: %s", exc)
            for _channel, _op, _args, future in ops:
                if future is not None and not future.done():
                    future.set_exception(Unavailable(f"redis unavailable: {exc}"))

    def _add(self, pipe: Pipeline, item: _Op) -> None:
        channel, op, args, _future = item
        entries, expiries, version, topic = self._keys.presence(channel)
        pipe.evalsha(
            self._script.sha, 3, entries, expiries, version, topic, self._ttl_ms, op, *args
        )

    @staticmethod
    def _finish(item: _Op, result: object) -> None:
        channel, op, _args, future = item
        if isinstance(result, list):
            if future is not None and not future.done():
                future.set_result(result)
            return
        error = Unavailable(f"redis refused the presence {op} on {channel!r}: {result}")
        if future is not None and not future.done():
            future.set_exception(error)
        else:
            log.warning("%s", error)
