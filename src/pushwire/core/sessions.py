"""One client as the hub knows it, whatever transport carries it, across reconnections.

A session outlives its connections for `session_grace` seconds: a client that reconnects
(on the same transport or another) with the session id resumes it. What it may have missed
is recovered by position, never kept per session:

- direct messages carry their place in the user's inbox (epoch, offset), kept by the broker;
  the client says where it stopped and the hub replays the rest from the inbox;
- channel messages carry the channel's offset; the client says where it stopped and the hub
  replays them from channel history, so fan-out never keeps per-session copies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSet
from types import MappingProxyType
from typing import Any, Final, Protocol

from ..clock import Timer
from ..message import Data, Message
from .transport import Transport

__all__ = [
    "ChannelSet",
    "MemorySessionStore",
    "Session",
    "SessionMigration",
    "SessionStore",
    "derived_secret",
    "new_public_id",
    "new_secret",
    "new_session_id",
    "new_session_ids",
]


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_NO_GRANTS: frozenset[str] = frozenset()
#: The info of a session whose connect handler attached none: one shared empty mapping (a
#: dict, which JSON encoders take; typed read-only, so nobody writes to it).
_NO_INFO: Mapping[str, Any] = {}


#: Standard base64 to its URL-safe alphabet (RFC 4648 5).
_URL_SAFE: Final = bytes.maketrans(b"+/", b"-_")
#: Random bytes drawn from the OS at once (a multiple of 3: no padding), for the ids of a
#: hundred sessions or so: two `getrandom` calls a session were a few percent of a WebSocket
#: handshake (py-spy).
_POOL_SIZE: Final = 4095
#: Characters handed out at once: a session's id and public id (`new_session_ids`); a
#: shorter take gets a chunk's beginning.
_CHUNK: Final = 34


class _RandomPool:
    """Random URL-safe base64 characters (each 6 bits of the OS's CSPRNG, `os.urandom`),
    encoded `_POOL_SIZE` bytes at a time and handed out in chunks of `_CHUNK`, each once, or
    (`pair`) as a session's two ids, a chunk cut in two. Encoding once per pool, not once
    per id, was a few percent of a WebSocket handshake (py-spy); the pieces are sliced by
    `map` as they are taken (a list of them made at once cost 2.6k instructions a pair,
    valgrind). Hubs in several threads never share a piece: each is taken by one `next` on
    an iterator, one step under the GIL (a lock cost more than the rest of a take). A forked
    child starts with an empty pool (it must not repeat its parent's)."""

    __slots__ = ("_chunks", "_pairs")

    def __init__(self) -> None:
        self._chunks: Iterator[str] = iter(())
        self._pairs: Iterator[tuple[str, str]] = iter(())

    def take(self, size: int) -> str:
        """`size` random characters of `[A-Za-z0-9_-]`."""
        if size > _CHUNK:
            return _encoded(os.urandom(-(-size * 3 // 4)))[:size]
        chunk = next(self._chunks, None)
        if chunk is None:
            # Two threads may both refill: each takes from its own, the other's rest is lost.
            chunks = self._chunks = map(_encoded(os.urandom(_POOL_SIZE)).__getitem__, _CHUNKS)
            chunk = next(chunks)
        return chunk if size == _CHUNK else chunk[:size]

    def pair(self) -> tuple[str, str]:
        """22 and 12 random characters of `[A-Za-z0-9_-]`: a session's id and public id."""
        pair = next(self._pairs, None)
        if pair is None:  # (as `take` refills)
            pieces = map(_encoded(os.urandom(_POOL_SIZE)).__getitem__, _PAIRS)
            pairs = self._pairs = zip(pieces, pieces, strict=True)
            pair = next(pairs)
        return pair

    def forget(self) -> None:
        self._chunks = iter(())
        self._pairs = iter(())


#: Where the pool's text (`_POOL_SIZE` bytes encoded, no padding) is cut: into chunks, and
#: into the two ids of a session.
_STARTS: Final = range(0, _POOL_SIZE * 4 // 3 - _CHUNK + 1, _CHUNK)
_CHUNKS: Final = tuple(slice(at, at + _CHUNK) for at in _STARTS)
_PAIRS: Final = tuple(
    cut for at in _STARTS for cut in (slice(at, at + 22), slice(at + 22, at + _CHUNK))
)


def _encoded(drawn: bytes) -> str:
    """`drawn` in URL-safe base64, without padding."""
    return binascii.b2a_base64(drawn, newline=False).translate(_URL_SAFE).decode().rstrip("=")


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def _random_text(size: int) -> str:
    """`size` random characters of URL-safe base64 (6 bits each, the OS's CSPRNG), as long
    as `secrets.token_urlsafe` makes them for a given number of bytes."""
    return _POOL.take(size)


def new_session_id() -> str:
    """132 random bits, URL-safe base64 (22 characters): unguessable."""
    return _random_text(22)


#: A session id and a public id (`new_session_id`, `new_public_id`) from one draw.
new_session_ids: Callable[[], tuple[str, str]] = _POOL.pair


def new_secret() -> str:
    """132 random bits, URL-safe base64 (22 characters): a session's resume secret."""
    return _random_text(22)


#: The key of the resume secrets this process derives (`derived_secret`): random, never shown.
_SECRET_KEY = secrets.token_bytes(32)


def derived_secret(session_id: str) -> str:
    """The resume secret of a session opened here without one: a keyed BLAKE2b of its id
    (128 bits, URL-safe base64, 22 characters, like `new_secret`). Unguessable without this
    process's key, and computed when asked for, so a session does not keep a string for it
    (71 bytes a subscriber)."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=16, key=_SECRET_KEY).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_public_id() -> str:
    """72 random bits, URL-safe base64 (12 characters): names a session to others."""
    return _random_text(12)


#: Channels a `ChannelSet` keeps in a tuple; past them, in a set (a tuple's `in` and
#: `discard` walk it).
SMALL_CHANNELS = 8


class ChannelSet(MutableSet[str]):
    """A session's channels, a set to whoever reads them, kept as small as they are few:
    one channel is its name itself (a set of one was 216 bytes a subscriber, a tuple of one
    88, this 40), a few are a tuple; past `SMALL_CHANNELS`, a set."""

    __slots__ = ("_names",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        # None: no channel; a str: that one channel; then a tuple, then a set.
        self._names: str | tuple[str, ...] | set[str] | None = None
        if names:  # (a session's starts empty: no loop to set up, once per connection)
            for name in names:
                self.add(name)

    def __contains__(self, name: object) -> bool:
        names = self._names
        if names is None:
            return False
        if type(names) is str:
            return name == names
        return name in names

    def __iter__(self) -> Iterator[str]:
        names = self._names
        if names is None:
            return iter(())
        if type(names) is str:
            return iter((names,))
        return iter(names)

    def __len__(self) -> int:
        names = self._names
        if names is None:
            return 0
        return 1 if type(names) is str else len(names)

    def add(self, name: str) -> None:
        names = self._names
        if names is None:
            self._names = name
        elif type(names) is str:
            if name != names:
                self._names = (names, name)
        elif isinstance(names, set):
            names.add(name)
        elif name not in names:
            self._names = (*names, name) if len(names) < SMALL_CHANNELS else {*names, name}

    def include(self, name: str) -> bool:
        """`add`, and whether `name` was new (one call where a subscription asked two)."""
        names = self._names
        if names is None:
            self._names = name
            return True
        if name in self:
            return False
        self.add(name)
        return True

    def discard(self, name: str) -> None:
        names = self._names
        if names is None:
            return
        if type(names) is str:
            if name == names:
                self._names = None
        elif isinstance(names, set):
            names.discard(name)
        elif name in names:
            rest = tuple(other for other in names if other != name)
            self._names = rest[0] if len(rest) == 1 else rest

    def __repr__(self) -> str:
        return f"ChannelSet({sorted(self)!r})"


class Session:
    """A client: id, user, channels, and where it stands in its user's inbox.

    `transport` is None while the client is between connections. `resumable` sessions
    (pushwire.v1) survive a drop for `session_grace`; raw-mode sessions end with their
    connection. `info` is what the app's connect handler attached: public, it is shown
    to the other members of the session's channels (presence). `public_id` names the session
    in presence; the session `id` is a credential (it resumes the session) and is never shown
    to anybody else. `present` are the channels where the session is a presence member.

    The id names the session; `secret`, given to its client alone (in the welcome), proves
    the right to it: resuming, polling or sending to a session needs both (`proves`), and
    only at `endpoint`, the endpoint that opened it (an opaque key the endpoints choose).
    """

    __slots__ = (
        "_present",
        "_secret",
        "address",
        "attached",
        "channels",
        "closed",
        "endpoint",
        "expiry",
        "forwarded",
        "grants",
        "id",
        "inbox_epoch",
        "inbox_offset",
        "inbox_pending",
        "info",
        "public_id",
        "resumable",
        "token_due",
        "token_expires",
        "transport",
        "user",
    )

    def __init__(
        self,
        transport: Transport | None,
        user: str | None = None,
        info: Mapping[str, Any] | None = None,
        # (positional too: keywords make a class call build a dict, ~0.7 µs a session)
        resumable: bool = False,
        session_id: str | None = None,
        endpoint: str = "",
        secret: str | None = None,
        address: str | None = None,
        public_id: str | None = None,
    ) -> None:
        self.id = session_id or new_session_id()
        #: The client's IP address (behind a trusted proxy, the one it forwarded), for the
        #: per-address bounds; None when unknown (a session handed over from another node).
        self.address = address
        # None: derived from the id when asked for (`derived_secret`), not kept.
        self._secret = secret
        self.endpoint = endpoint
        self.public_id = public_id or new_public_id()
        # In join order: a session is present in a few channels, one mostly, kept as its name
        # alone (a dict of one was 184 bytes a subscriber, a tuple of one 48); a tuple of more.
        self._present: str | tuple[str, ...] = ()
        self.user = user
        self.info: Mapping[str, Any] = info or _NO_INFO
        self.transport = transport
        #: How many times a returning client was attached to it here (`Lifecycle.resume`): a
        #: hand-over asked for before the latest one is stale (routing.py).
        self.attached = 0
        self.channels = ChannelSet()
        self.resumable = resumable
        self.closed = False
        self.expiry: Timer | None = None  # the grace timer while detached
        #: The position in the user's inbox of the last direct message written to the
        #: session's connection (None: none yet): a message at or before it is not written
        #: twice (a recovery and live delivery overlap).
        self.inbox_epoch: str | None = None
        self.inbox_offset = 0
        #: Direct messages that arrived while the session's inbox is being recovered
        #: (`DirectMessages.recover`), written after what the inbox replays; None otherwise.
        self.inbox_pending: list[Message] | None = None
        #: Channels the client's token lets it read whatever their rule (its `channels`
        #: claim), and when the token expires (seconds since the epoch; None: never), set
        #: through `TokenExpiry.watch`, which keeps `token_due`: the same time on the hub's
        #: clock, leeway included.
        self.grants: frozenset[str] = _NO_GRANTS
        self.token_expires: float | None = None
        self.token_due: float | None = None
        #: The request headers the subscribe proxy passes on to the app's backend (those of
        #: the connection that opened the session; empty without a subscribe proxy).
        self.forwarded: Mapping[str, str] = _NO_HEADERS

    @property
    def present(self) -> tuple[str, ...]:
        """The channels where the session is a presence member, in join order."""
        present = self._present
        return (present,) if type(present) is str else present  # type: ignore[return-value]

    def add_present(self, channel: str) -> bool:
        """The session is a presence member of `channel` (False: it was one already)."""
        present = self._present
        if type(present) is str:
            if present == channel:
                return False
            self._present = (present, channel)
        elif channel in present:
            return False
        else:
            self._present = (*present, channel) if present else channel
        return True

    def discard_present(self, channel: str) -> bool:
        """The session is no presence member of `channel` (False: it was none)."""
        present = self._present
        if type(present) is str:
            if present != channel:
                return False
            self._present = ()
            return True
        if channel not in present:
            return False
        rest = tuple(name for name in present if name != channel)
        self._present = rest[0] if len(rest) == 1 else rest
        return True

    @property
    def secret(self) -> str:
        """The resume secret: the one the session was opened with, else `derived_secret`."""
        secret = self._secret
        return derived_secret(self.id) if secret is None else secret

    def proves(self, secret: object) -> bool:
        """Whether `secret` is this session's resume secret (compared in constant time)."""
        return isinstance(secret, str) and hmac.compare_digest(
            secret.encode(), self.secret.encode()
        )

    def reply(self, data: Data) -> None:
        """A message to this session alone, on its connection now (an echo): not kept, like
        the answer to a request."""
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(transport.framing.frame_direct(data))

    def write_direct(self, message: Message) -> None:
        """Write a direct message of the user's inbox unless the session has it already
        (at or before the last one written, in the same epoch), or is between connections
        (it recovers it from the inbox when it comes back)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if self.inbox_epoch == message.epoch and message.offset <= self.inbox_offset:
            return
        self.inbox_epoch, self.inbox_offset = message.epoch, message.offset
        transport.write(transport.framing.frame_direct(message.data, message.epoch, message.offset))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session's connection; the hub forgets it when the transport reports it."""
        if self.transport is not None:
            self.transport.close(code, reason)

    def __repr__(self) -> str:
        via = self.transport.name if self.transport is not None else "nothing (detached)"
        return f"<Session {self.id} user={self.user!r} via {via}>"


class SessionStore(Mapping[str, Session]):
    """Where the hub keeps sessions, between connections too: id -> session (read as a
    mapping), `add` when one opens, `remove` when it ends for good.

    The memory store keeps them in this process, so a client resumes on the process that
    opened its session. A store shared by every node is what lets any node answer any poll.
    """

    @abstractmethod
    def add(self, session: Session) -> None:
        """Keep `session` under its id."""

    @abstractmethod
    def remove(self, session_id: str) -> None:
        """Forget a session (nothing happens for an unknown id)."""


class MemorySessionStore(dict[str, Session], SessionStore):
    """The embedded store: a dict of this process's sessions (bounded by max_connections
    plus the sessions waiting out their session_grace)."""

    def add(self, session: Session) -> None:
        self[session.id] = session

    def remove(self, session_id: str) -> None:
        self.pop(session_id, None)


class SessionMigration(Protocol):
    """Moves sessions between processes (`pushwire.routing`): a client resuming a session
    that another process holds gets it from there."""

    async def take_over(
        self, session_id: str, secret: object, endpoint: str, transport: Transport
    ) -> Session | None:
        """The session `session_id`, fetched from the process holding it and attached to
        `transport` here; None when no process hands it over (then it counts as expired).
        The holding process lets go only of a session of `endpoint` whose resume secret is
        `secret`."""
        ...
