"""Reading a stream's position and history from Redis, with one Lua script.

The script reads the stream's meta hash and, when asked, the newest entries of its Stream
after a position (layout.py describes both and how publishes trim them). A channel and a
user's inbox are both such streams, under their own names and bounds: one reader each.

Guaranteed:

- Every node sees the same (epoch, offset) for a message: both live in Redis, and Redis runs
  the scripts one at a time.
- When Redis lost a channel's state (restart without persistence, flush, key expiry), the
  next access (a read or a publish) creates a new random epoch, and `history` after an older
  position says `complete=False`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ...errors import Unavailable
from ...message import Message, Position
from ..base import History
from .health import CONNECTION_ERRORS
from .layout import Retention, decode_data

__all__ = ["READ_SCRIPT", "HistoryReader"]

# KEYS: meta, history, the slot's lineage (lineage.py: when the meta's differs, the
# channel starts over in a new epoch, as the publish script does). ARGV: candidate epoch,
# since epoch, since offset, limit, channel_ttl ms, history_ttl ms. Returns {epoch, offset,
# entries newest first}.
READ_SCRIPT: Final = """
local meta, history = KEYS[1], KEYS[2]
local lineage = redis.call('GET', KEYS[3]) or ''
if (redis.call('HGET', meta, 'lineage') or '') ~= lineage then
  redis.call('DEL', meta)
end
if redis.call('HSETNX', meta, 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', history)
  redis.call('HSET', meta, 'offset', 0)
  if lineage ~= '' then
    redis.call('HSET', meta, 'lineage', lineage)
  end
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


class HistoryReader:
    """Positions and history of streams (channels, or users' inboxes), read through the
    client's connections.

    Args:
        client: the broker's Redis client.
        names: a stream's meta hash, Stream and pub/sub names, from its name
            (`Keys.channel` or `Keys.inbox`).
        retention: how much history is kept, and how long.
        where: the Redis server as errors name it.
        lineage: the lineage key of a meta hash's slot (`Keys.lineage`).
    """

    def __init__(
        self,
        client: Redis,
        names: Callable[[str], tuple[str, str, str]],
        retention: Retention,
        where: str,
        lineage: Callable[[str], str],
    ) -> None:
        self._names = names
        self._lineage = lineage
        #: What is kept of each stream (`RedisBroker.set_history_policy` changes it).
        self.retention_of: Callable[[str], Retention] = lambda _name: retention
        self._where = where
        self._script = client.register_script(READ_SCRIPT)

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
            channel, since.epoch, since.offset, self.retention_of(channel).history_size
        )
        messages: list[Message] = []
        for _id, fields in reversed(entries):
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            data = decode_data(values[b"k"], values[b"d"])
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
        meta, history, _topic = self._names(channel)
        retention = self.retention_of(channel)
        args: list[str | int] = [
            secrets.token_hex(4),
            since_epoch,
            since_offset,
            limit,
            retention.channel_ttl_ms,
            retention.history_ttl_ms,
        ]
        try:
            keys = [meta, history, self._lineage(meta)]
            epoch, offset, entries = await self._script(keys=keys, args=args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"redis at {self._where} unavailable: {exc}") from exc
        except ResponseError as exc:  # a Redis Cluster's CLUSTERDOWN or MOVED
            raise Unavailable(f"redis at {self._where} refused the read: {exc}") from exc
        return epoch.decode("ascii"), int(offset), entries
