"""What pushwire keeps in Redis and sends through it: every name, and the form of each value.

Every key and pub/sub channel name starts with the broker's prefix (`pushwire:` by default).
A channel's names share its hash tag `{C}`, so one channel would live on one shard.

Channel `C` (its messages: publisher.py writes, history.py reads):

- `pushwire:{C}:meta`: a hash, `epoch` (random hex, created when missing, never changed),
  `offset` (the last offset), `bytes` (the data bytes ever appended in this epoch) and
  `first` (the `bytes` before the oldest entry, when last looked). It expires `channel_ttl`
  seconds after the last publish.
- `pushwire:{C}:history`: a Stream, one entry per message: `s` the bytes appended before it
  in this epoch, `o` offset, `k` kind (`t` text, `b` binary), `d` data (`s` is absent when
  `history_bytes` is 0). Every publish trims it to about `history_size` entries (`XADD MAXLEN
  ~`: whole nodes, cheap), exactly to the newest entries whose data add up to at most
  `history_bytes` (`s` says where to cut: `XTRIM MINID`), and exactly to the last
  `history_ttl` seconds of Redis's clock (`XTRIM MINID`, Stream IDs being Redis times). It
  expires `history_ttl` seconds after the last publish. `history` reads at most
  `history_size` entries and none older than `history_ttl` (so the age bound holds on a
  quiet channel too), so its answer does not depend on where the approximate trim fell.
- `pushwire:{C}:idem:K`: a string, `<epoch> <offset>` of the publish to `C` that carried the
  idempotency key `K` (at most 100 characters of `[A-Za-z0-9_.:-]`); set by the publish script
  with `SET NX PX idempotency_ttl`, read by the same script before it publishes.
- pub/sub channel `pushwire:{C}`: each message as `<epoch> <offset> <kind> <data>`, and the
  channel's presence changes as `!<version> <count> j|l <entry>`.

Channel `C`'s presence (presence.py, which describes how they change):

- `pushwire:{C}:pm`: a hash, member (a session's public id) -> its entry (JSON).
- `pushwire:{C}:pz`: a sorted set, member -> expiry time (ms of Redis's clock), so that the
  count is a ZCARD and the expired members are one ZRANGEBYSCORE.
- `pushwire:{C}:pv`: the channel's presence version, one more per join or leave.

User `U`'s inbox (its direct messages) is a stream like a channel's, written by the same
publish script and read by the same read script, under its own names and bounds:

- `pushwire:inbox:{U}:meta`: a hash, `epoch`, `offset`, `bytes` (the data bytes ever
  appended in this epoch) and `first`. It expires `inbox_ttl` seconds after the last direct
  message (an idle user's inbox goes away; the next one starts a new epoch).
- `pushwire:inbox:{U}:history`: a Stream, one entry per message: `s` the bytes appended before
  it in this epoch, then `o`, `k`, `d` as a channel's. Every direct message trims it to about
  `inbox_size` entries, to `inbox_ttl` seconds, and exactly to the newest entries whose data
  add up to at most `inbox_bytes` (`s` says where to cut: `XTRIM MINID`).
- pub/sub channel `pushwire:user:U`: each direct message as `<epoch> <offset> <kind> <data>`.

Node `N` (nodes.py): `pushwire:node:N`, both the liveness key (any value, with a TTL) and the
pub/sub channel of requests to the node (opaque payloads).

On a Redis Cluster (`Keys(sharded=True)`, cluster.py) every name of a channel or user hashes
to one slot, pub/sub included, and travels by sharded pub/sub (SPUBLISH, SSUBSCRIBE): a
user's pub/sub channel is `pushwire:user:{U}` (its inbox's hash tag), and the nodes' names are
`pushwire:{nodes}:node:N`, all in one slot (one shard carries node-to-node requests).

Text stays text, binary stays binary: the kind travels with the data, in history and on
pub/sub alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ...message import Data, Message
from .lineage import lineage_key

__all__ = ["BINARY", "TEXT", "Keys", "Retention", "decode_data", "encode_data", "parse_message"]

#: The kind of a text message (its data is UTF-8, lone surrogates passed through).
TEXT: Final = b"t"
#: The kind of a binary message.
BINARY: Final = b"b"


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of keys and pub/sub channels, all under `prefix` (see the module)."""

    prefix: str = "pushwire:"
    #: A Redis Cluster: names hash-tagged per channel, user and the nodes, sharded pub/sub.
    sharded: bool = False

    @property
    def publish_command(self) -> str:
        """PUBLISH, or SPUBLISH (sharded pub/sub: delivered by the channel's shard only)."""
        return "SPUBLISH" if self.sharded else "PUBLISH"

    def script(self, source: str) -> str:
        """A Lua script's source with its PUBLISH calls made `publish_command` (and, on one
        Redis, no read of the slot's lineage)."""
        if self.sharded:
            return source.replace("'PUBLISH'", "'SPUBLISH'")
        # One Redis: no slot is ever fenced (lineage.py), so no lineage to read.
        return source.replace("redis.call('GET', KEYS[3]) or ''", "''")

    def topic(self, channel: str) -> str:
        """The channel's pub/sub name: its messages and presence changes travel on it."""
        return f"{self.prefix}{{{channel}}}"

    def channel(self, channel: str) -> tuple[str, str, str]:
        """The channel's meta hash, history Stream and pub/sub names (one hash tag)."""
        base = self.topic(channel)
        return f"{base}:meta", f"{base}:history", base

    def lineage(self, name: str) -> str:
        """The lineage key of the slot of the key `name` (lineage.py)."""
        return lineage_key(self.prefix, name, sharded=self.sharded)

    def idempotency(self, channel: str, key: str) -> str:
        """Where the publish to `channel` with the idempotency key `key` is remembered."""
        return f"{self.topic(channel)}:idem:{key}"

    def presence(self, channel: str) -> tuple[str, str, str, str]:
        """The channel's presence hash, sorted set and version, and its pub/sub name."""
        base = self.topic(channel)
        return f"{base}:pm", f"{base}:pz", f"{base}:pv", base

    def user(self, user: str) -> str:
        """The pub/sub channel of `user`'s direct messages."""
        if self.sharded:
            return f"{self.prefix}user:{{{user}}}"  # the inbox's slot
        return f"{self.prefix}user:{user}"

    def inbox(self, user: str) -> tuple[str, str, str]:
        """The meta hash and Stream of `user`'s inbox, and its pub/sub name."""
        base = f"{self.prefix}inbox:{{{user}}}"
        return f"{base}:meta", f"{base}:history", self.user(user)

    def node(self, node: str) -> str:
        """The liveness key of `node`, which is also the name of its pub/sub channel."""
        if self.sharded:
            return f"{self.prefix}{{nodes}}:node:{node}"  # every node's in one slot
        return f"{self.prefix}node:{node}"


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of a channel Redis keeps, and how long, as the scripts take it."""

    #: Messages kept per channel (0: none).
    history_size: int
    #: Milliseconds a message stays in history.
    history_ttl_ms: str
    #: Milliseconds a channel's epoch and offset outlive its last publish.
    channel_ttl_ms: str
    #: Milliseconds a publish's idempotency key is remembered.
    idempotency_ttl_ms: str = "300000"
    #: Bytes of data kept per stream ("0": no such bound).
    max_bytes: str = "0"

    @classmethod
    def of(
        cls,
        history_size: int,
        history_ttl: float,
        channel_ttl: float,
        idempotency_ttl: float = 300.0,
        max_bytes: int = 0,
    ) -> Retention:
        """From a size, durations in seconds and a byte bound (0: none)."""
        return cls(
            history_size,
            str(round(history_ttl * 1000)),
            str(round(channel_ttl * 1000)),
            str(max(1, round(idempotency_ttl * 1000))),
            str(max_bytes),
        )


def encode_data(data: Data) -> tuple[bytes, bytes]:
    """The kind of `data` and its bytes, as stored and published."""
    if isinstance(data, str):
        return TEXT, data.encode("utf-8", "surrogatepass")
    return BINARY, bytes(data)


def decode_data(kind: bytes, data: bytes) -> Data:
    """The data as it was published: text for the kind `t`, bytes otherwise.

    Raises:
        ValueError: text that is not UTF-8.
    """
    return data.decode("utf-8", "surrogatepass") if kind == TEXT else data


def parse_message(channel: str, payload: bytes) -> Message:
    """A message from the channel's pub/sub: `<epoch> <offset> <kind> <data>`.

    Raises:
        ValueError: it is malformed.
    """
    epoch, offset, kind, data = payload.split(b" ", 3)
    return Message(channel, epoch.decode("ascii"), int(offset), decode_data(kind, data))
