"""The hub: sessions, channels, users and presence. It knows no transport and no other process.

Fan-out is encode-once: a channel message is framed once per framing in use on that channel
(`Framing.frame_message`), and the same bytes object is written to every subscriber using
that framing. The per-subscriber work is one `write` call.

Fan-out is also batched: what is published to a channel within one turn of the event loop
(say, all the messages one read from a publisher brought) goes to each subscriber in one
write. A write is a system call, and it is what fan-out costs; batching divides that cost by
the batch size. A channel's messages still arrive in offset order, and membership changes
flush what is pending first, so nobody gets a message from before it joined or misses one
from before it left.

Presence: every session in a channel is a member, announced to every node through the broker
(pushwire.presence). A session that merely lost its connection stays a member while it waits
out `session_grace`: reconnecting does not make it leave and join again. Sessions that
subscribed with presence get a snapshot, then each `join` and `leave`, batched per loop turn.

Direct messages: with the in-memory broker the hub writes them to the user's sessions itself,
at once. With a broker that spans processes (`DirectBroker`), a direct message is published
once through the broker, and each process that holds a session of the user (this one too)
receives it and writes it to its own sessions: this process listens to a user from the
opening of the user's first session here until its last one ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson

from .broker.base import Broker, DirectBroker
from .broker.memory import MemoryBroker
from .clock import LOOP_CLOCK, Clock
from .config import Config
from .errors import (
    BadRequest,
    Forbidden,
    LimitReached,
    PresenceInfoTooLarge,
    PushwireError,
    SessionOverflow,
)
from .message import Data, Message, Position
from .presence import PresenceEvent, PresenceSnapshot, encode_entry
from .session import (
    MemorySessionStore,
    Session,
    SessionMigration,
    SessionStore,
    new_session_id,
)
from .transports.base import Framing, Transport

__all__ = ["ConnectRequest", "Hub", "HubStats", "Identity"]

#: Bytes of pending channel messages after which fan-out happens at once, not at turn's end.
MAX_BATCH_BYTES: Final = 256 * 1024

log = logging.getLogger("pushwire.hub")

_CHANNEL_NAME: Final = re.compile(r"[A-Za-z0-9_\-.:@#]+")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What the connect handler sees of a connecting client."""

    path: str
    transport: str
    headers: list[tuple[str, str]]
    query: Mapping[str, str]
    user: str | None = None
    token: str | None = None
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connecting client is: its user id and the public info others see (presence)."""

    user: str | None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HubStats:
    """Counters the hub keeps; `frames_encoded` counts Framing calls for channel messages."""

    published: int = 0
    frames_encoded: int = 0
    deliveries: int = 0


@dataclass(slots=True)
class _Channel:
    # framing -> session -> the transport to write to (fan-out reads transports directly)
    members: dict[Framing, dict[Session, Transport]] = field(default_factory=dict)
    # Sessions subscribed with presence (they got a snapshot), and the snapshot version of
    # those that have not yet seen an event after it.
    watchers: dict[Session, Transport] = field(default_factory=dict)
    skip: dict[Session, int] = field(default_factory=dict)
    count: int = 0
    # Presence events not yet written: they wait for the end of the turn, or while a
    # snapshot is read (`presence_hold` above 0) so that they follow it.
    presence_pending: list[PresenceEvent] = field(default_factory=list)
    presence_hold: int = 0
    # The broker subscription of this process (done once the broker confirmed it).
    ready: asyncio.Future[None] | None = None
    # The last position fanned out here: anything at or before it is not sent twice.
    epoch: str | None = None
    offset: int = 0
    # Catch-ups in progress (a subscriber reading history, recovery after an outage):
    # while above 0, this channel's messages wait, so they go out after the history.
    hold: int = 0


ConnectHandler = Callable[[ConnectRequest], Any]
MessageHandler = Callable[[Session, Data], "Awaitable[None] | None"]
SubscribeHandler = Callable[[Session, str], "bool | Awaitable[bool | None] | None"]
DisconnectHandler = Callable[[Session, int, str], "Awaitable[None] | None"]


def _fresh(state: _Channel, messages: list[Message]) -> list[Message]:
    """The messages not fanned out yet, in offset order; moves the channel's position.

    Live delivery and history may overlap or interleave (a subscriber's catch-up, recovery
    after a broker outage): sort, and drop what is at or before the last position sent.
    """
    if any(a.offset > b.offset for a, b in itertools.pairwise(messages)):
        newest = messages[-1].epoch  # an older epoch (before a broker lost its data) goes first
        messages = sorted(messages, key=lambda m: (m.epoch == newest, m.offset))
    fresh = []
    for message in messages:
        if message.epoch == state.epoch and message.offset <= state.offset:
            continue
        state.epoch, state.offset = message.epoch, message.offset
        fresh.append(message)
    return fresh


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("broker subscription failed", exc_info=future.exception())


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Hub:
    """Channels, direct push to users, and the app's handlers.

    Args:
        broker: where channel messages get their offsets and reach other processes;
            the in-memory broker by default.
        store: where sessions are kept between connections; this process's memory by
            default.
        config: limits (`max_subscriptions`, `max_channel_name`).
    """

    def __init__(
        self,
        broker: Broker | None = None,
        config: Config | None = None,
        store: SessionStore | None = None,
    ) -> None:
        self.config = config or Config()
        #: Where the hub's timers read the time (the event loop's clock).
        self.clock: Clock = LOOP_CLOCK
        self.broker: Broker = broker or MemoryBroker(self.config.history_size)
        self.broker.attach(self._deliver)
        self.broker.attach_presence(self._presence_event)
        #: The broker's direct-message part when it spans processes (None: in-memory).
        self.direct: DirectBroker | None = self.broker.direct
        if self.direct is not None:
            self.direct.attach_direct(self._deliver_direct)
        # A broker that can lose its connection says which channels may have gaps.
        self.broker.attach_resubscribed(self._resubscribed)
        self.stats = HubStats()
        self._channels: dict[str, _Channel] = {}
        self._users: dict[str, dict[Session, None]] = {}
        # Users whose direct messages this process listens to (DirectBroker only): done once
        # the broker confirmed it.
        self._listening: dict[str, asyncio.Future[None]] = {}
        # Direct messages that arrived for users whose session is being handed over to here.
        self._adopting: dict[str, list[list[tuple[str, Data]]]] = {}
        self._sessions: SessionStore = store if store is not None else MemorySessionStore()
        #: Makes the id of each new session (session routing puts the node's id in it).
        self.new_session_id: Callable[[], str] = new_session_id
        #: Fetches sessions held by other processes on resumption (None: one process).
        self.migration: SessionMigration | None = None
        self._connect_handler: ConnectHandler | None = None
        self._message_handler: MessageHandler | None = None
        self._subscribe_handler: SubscribeHandler | None = None
        self._disconnect_handler: DisconnectHandler | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._pending: dict[str, list[Message]] = {}
        self._pending_bytes = 0
        self._flush_scheduled = False

    # -- handlers the app registers ---------------------------------------------------------

    def on_connect(self, handler: F) -> F:
        """Register `handler(request)`; raise `Forbidden` to refuse.

        It returns the user id (`str`) or None, or a mapping `{"user": id or None, "info":
        {...}}`, or an `Identity`: `info` is public, shown with the session in presence to
        the members of its channels; its JSON is bounded by `max_presence_info` bytes.
        """
        self._connect_handler = handler
        return handler

    def on_message(self, handler: F) -> F:
        """Register `handler(session, data)` for messages sent to the general endpoint."""
        self._message_handler = handler
        return handler

    def on_subscribe(self, handler: F) -> F:
        """Register `handler(session, channel) -> bool`; False or `Forbidden` refuses."""
        self._subscribe_handler = handler
        return handler

    def on_disconnect(self, handler: F) -> F:
        """Register `handler(session, code, reason)`, called once per session."""
        self._disconnect_handler = handler
        return handler

    # -- sessions ---------------------------------------------------------------------------

    @property
    def sessions(self) -> Mapping[str, Session]:
        return self._sessions

    @property
    def has_connect_handler(self) -> bool:
        return self._connect_handler is not None

    async def authorize(self, request: ConnectRequest) -> str | None:
        """Run the connect handler: the user id to use, or `Forbidden` (see `identify`)."""
        return (await self.identify(request)).user

    async def identify(self, request: ConnectRequest) -> Identity:
        """Run the connect handler: who the client is, or `Forbidden`.

        Raises:
            Forbidden: the handler refused.
            PresenceInfoTooLarge: the info's JSON is over `max_presence_info` bytes.
            TypeError: the handler returned something else than documented (`on_connect`).
        """
        if self._connect_handler is None:
            return Identity(request.user)
        result = await _maybe_await(self._connect_handler(request))
        if result is None or isinstance(result, str):
            return Identity(result)
        if isinstance(result, Identity):
            identity = result
        elif isinstance(result, Mapping):
            user, info = result.get("user"), result.get("info", {})
            if user is not None and not isinstance(user, str):
                raise TypeError(f"connect handler's user must be str or None, not {type(user)}")
            if not isinstance(info, Mapping):
                raise TypeError(f"connect handler's info must be a mapping, not {type(info)}")
            identity = Identity(user, info)
        else:
            raise TypeError(
                f"connect handler must return str, None, a mapping or Identity, not {type(result)}"
            )
        try:
            size = len(orjson.dumps(identity.info))
        except TypeError as exc:
            raise TypeError(f"connect handler's info is not JSON: {exc}") from exc
        if size > self.config.max_presence_info:
            raise PresenceInfoTooLarge(
                f"presence info over size limit ({size} > {self.config.max_presence_info} bytes)"
            )
        return identity

    def open_session(
        self,
        transport: Transport,
        user: str | None = None,
        info: Mapping[str, Any] | None = None,
        *,
        resumable: bool = False,
    ) -> Session:
        """A new session attached to `transport`. `resumable` sessions (pushwire.v1) keep
        unacknowledged direct messages and survive `session_grace` seconds detached."""
        config = self.config
        session = Session(
            transport,
            user,
            info,
            resumable=resumable,
            max_unacked=config.max_unacked,
            max_unacked_bytes=config.max_unacked_bytes,
            session_id=self.new_session_id(),
        )
        self._sessions.add(session)
        if user is not None:
            self._users.setdefault(user, {})[session] = None
            if self.direct is not None and user not in self._listening:
                self._listen(user)
        return session

    def detach(
        self, session: Session, transport: Transport, code: int, reason: str, *, final: bool
    ) -> None:
        """`transport`, the session's connection, ended. `final`: the client itself closed it,
        so the session ends. Otherwise a resumable session waits `session_grace` seconds for
        the client to come back (it leaves its channels meanwhile: the client resubscribes with
        its positions); any other session is closed."""
        if session.closed or session.transport is not transport:
            return  # already resumed on another connection
        if final or not session.resumable:
            self.close_session(session, code, reason)
            return
        for channel in list(session.channels):
            # Still a presence member until the grace ends: a reconnection does not flap.
            self.unsubscribe(session, channel, leave=False)
        session.transport = None
        if session.expiry is not None:
            session.expiry.cancel()
        session.expiry = asyncio.get_running_loop().call_later(
            self.config.session_grace, self.close_session, session, code, reason
        )

    def resume(self, session_id: str, transport: Transport) -> Session | None:
        """Attach a returning client to its session, or None when it is unknown or expired.

        A session still attached elsewhere is taken over: its old connection is closed 4004.
        Unacknowledged direct messages are written again.
        """
        session = self._sessions.get(session_id)
        if session is None or session.closed or not session.resumable:
            return None
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        old = session.transport
        if old is not None and old is not transport:
            for channel in list(session.channels):
                self.unsubscribe(session, channel, leave=False)
            session.transport = None
            old.close(4004, "session resumed on another connection")
        session.transport = transport
        return session

    def hand_over(self, session: Session) -> None:
        """The session moves to another process: forget it here without ending it (the
        disconnect handler does not run); its connection, if any, is closed with 4004."""
        if session.closed:
            return
        old = session.transport
        session.transport = None
        self._forget(session)
        if old is not None:
            old.close(4004, "session resumed on another node")

    def adopt(
        self,
        transport: Transport,
        user: str | None,
        info: Mapping[str, Any],
        seq: int,
        acked: int,
        unacked: Iterable[tuple[int, Data]],
        last_direct: str | None = None,
        arrived: list[tuple[str, Data]] | None = None,
    ) -> Session:
        """A session handed over by another process, attached to `transport` here (under a
        new id): its direct-message count and the messages not acknowledged yet carry on.

        `arrived` (from `begin_adoption`): the direct messages to the user this process got
        during the hand-over; those after `last_direct`, the last one the old process gave
        the session (all of them when it is not among them), are added as unacknowledged:
        `resend_unacked` writes them after the welcome. A session that overflows is closed.
        """
        session = self.open_session(transport, user, info, resumable=True)
        session.seq, session.acked = seq, acked
        kept = session.unacked = deque(unacked)
        session.unacked_bytes = sum(len(data) for _, data in kept)
        session.last_direct = last_direct
        if arrived:
            ids = [message_id for message_id, _ in arrived]
            start = ids.index(last_direct) + 1 if last_direct in ids else 0
            session.transport = None  # kept, not written: the welcome goes first
            for message_id, data in arrived[start:]:
                self.send_to_session(session, data)
                session.last_direct = message_id
            if not session.closed:
                session.transport = transport
        return session

    def begin_adoption(self, user: str) -> list[tuple[str, Data]]:
        """Keep the direct messages to `user` arriving from now on (the user is listened to:
        `prepare_user`) in the list returned, for `adopt`; `end_adoption` stops it. At most
        `max_unacked` are kept."""
        arrived: list[tuple[str, Data]] = []
        self._adopting.setdefault(user, []).append(arrived)
        return arrived

    def end_adoption(self, user: str, arrived: list[tuple[str, Data]]) -> None:
        lists = self._adopting.get(user)
        if lists is None:
            return
        with contextlib.suppress(ValueError):
            lists.remove(arrived)
        if not lists:
            del self._adopting[user]

    def close_session(self, session: Session, code: int, reason: str) -> None:
        """Forget a session for good; runs the disconnect handler once."""
        if session.closed:
            return
        self._forget(session)
        if self._disconnect_handler is not None:
            self._run(self._disconnect_handler(session, code, reason))

    def _forget(self, session: Session) -> None:
        session.closed = True
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        self._sessions.remove(session.id)
        for channel in list(session.channels):
            self.unsubscribe(session, channel)
        for channel in list(session.present):
            self._leave(session, channel)
        if session.user is not None:
            sessions = self._users.get(session.user)
            if sessions is not None:
                sessions.pop(session, None)
                if not sessions:
                    del self._users[session.user]
                    self.release_user(session.user)

    async def handle_message(self, session: Session, data: Data) -> None:
        if self._message_handler is not None:
            await _maybe_await(self._message_handler(session, data))

    # -- channels ---------------------------------------------------------------------------

    def check_channel(self, channel: object) -> str:
        """The channel name if valid. Raises `BadRequest` otherwise."""
        if (
            not isinstance(channel, str)
            or not 0 < len(channel) <= self.config.max_channel_name
            or not _CHANNEL_NAME.fullmatch(channel)
        ):
            raise BadRequest(f"invalid channel name {channel!r}")
        return channel

    async def authorize_subscribe(self, session: Session, channel: str) -> None:
        """Validate and run the subscribe handler.

        Raises:
            BadRequest: invalid channel name.
            Forbidden: the app's subscribe handler refused.
            LimitReached: the session is in `max_subscriptions` channels already.
        """
        self.check_channel(channel)
        if channel not in session.channels and len(session.channels) >= (
            self.config.max_subscriptions
        ):
            raise LimitReached(
                f"subscription limit reached ({self.config.max_subscriptions} channels)"
            )
        if self._subscribe_handler is not None:
            allowed = await _maybe_await(self._subscribe_handler(session, channel))
            if allowed is False:
                raise Forbidden(f"subscription to {channel!r} refused")

    def subscribe(self, session: Session, channel: str) -> None:
        """Add a session to a channel now (authorisation is `authorize_subscribe`'s job);
        it joins the channel's presence unless it is there already. `watch_presence` then
        sends it the members and their changes."""
        transport = session.transport
        if session.closed or transport is None:
            return
        if self._pending:
            self.flush()
        state = self._state(channel)
        if channel not in session.channels:
            session.channels.add(channel)
            state.members.setdefault(transport.framing, {})[session] = transport
            state.count += 1
        if channel not in session.present:
            session.present[channel] = None
            entry = encode_entry(session.public_id, session.user, session.info)
            self.broker.presence_join(channel, session.public_id, entry)

    def _state(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            state.ready = asyncio.ensure_future(self.broker.subscribe(channel))
            state.ready.add_done_callback(_log_failure)
        return state

    async def prepare(self, channel: str) -> None:
        """Make sure this process receives `channel`'s messages (the broker confirmed its
        subscription) before a subscriber reads the channel's position."""
        ready = self._state(channel).ready
        if ready is not None:
            await asyncio.shield(ready)

    @contextlib.contextmanager
    def holding(self, channel: str) -> Iterator[None]:
        """While inside, `channel`'s messages wait here (others keep flowing): a subscriber
        writes what history holds first, and live messages follow without a gap or a
        reordering. Leaving flushes what waited."""
        state = self._state(channel)
        state.hold += 1
        try:
            yield
        finally:
            state.hold -= 1
            if not state.hold and channel in self._pending:
                self.flush()

    def unsubscribe(self, session: Session, channel: str, *, leave: bool = True) -> None:
        """Take a session out of a channel; `leave`: out of its presence too (False keeps a
        detached session present while it waits out its grace)."""
        if leave and channel in session.present:
            self._leave(session, channel)
        state = self._channels.get(channel)
        if state is None or channel not in session.channels:
            return
        if self._pending:
            self.flush()
        session.channels.discard(channel)
        for framing, members in list(state.members.items()):
            if members.pop(session, None) is not None and not members:
                del state.members[framing]
        state.watchers.pop(session, None)
        state.skip.pop(session, None)
        state.count -= 1
        if state.count == 0 and not state.hold and not state.presence_hold:
            del self._channels[channel]
            self._run(self.broker.unsubscribe(channel))

    def _leave(self, session: Session, channel: str) -> None:
        del session.present[channel]
        self.broker.presence_leave(channel, session.public_id)

    def subscriber_count(self, channel: str) -> int:
        """Sessions of this process in `channel`."""
        state = self._channels.get(channel)
        return state.count if state is not None else 0

    async def position(self, channel: str) -> Position:
        return await self.broker.position(self.check_channel(channel))

    # -- publishing -------------------------------------------------------------------------

    def publish_nowait(
        self,
        channel: str,
        data: Data,
        done: Callable[[Message | PushwireError], None] | None = None,
    ) -> None:
        """Publish without waiting; publishes are delivered in call order."""
        self.stats.published += 1
        self.broker.publish(channel, data, done)

    async def publish(self, channel: str, data: Data) -> Message:
        """Publish `data` to `channel` on every node; returns it with its position.

        Raises:
            BadRequest: invalid channel name.
            Unavailable: the broker cannot take it now.
        """
        self.check_channel(channel)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def done(result: Message | PushwireError) -> None:
            if future.done():
                return
            if isinstance(result, Message):
                future.set_result(result)
            else:
                future.set_exception(result)

        self.publish_nowait(channel, data, done)
        return await future

    @property
    def spans_nodes(self) -> bool:
        """Whether the broker reaches other processes with direct messages (Redis)."""
        return self.direct is not None

    def send(self, user: str, data: Data) -> int:
        """Send a direct message to every session of `user`, in this process and, with a broker
        that spans processes, on every node; returns how many sessions of this process get it.

        In-memory broker: written at once, and the count is every session of the user. A
        broker spanning processes: published for every node without waiting (failures are
        logged; `send_everywhere` reports them); this process's sessions get it when it comes
        back from the broker.
        """
        sessions = self._users.get(user)
        direct = self.direct
        if direct is not None:
            direct.send_direct(user, data)
            return len(sessions) if sessions else 0
        if not sessions:
            return 0
        for session in list(sessions):
            self.send_to_session(session, data)
        return len(sessions)

    async def send_everywhere(self, user: str, data: Data) -> int:
        """Send a direct message to every session of `user` on every node; returns how many
        processes received it (in-memory broker: 1 when the user has a session here, else 0).

        Raises:
            Unavailable: the broker cannot take it now (nobody got it, or in the rare case of
                a connection lost after the broker took it, maybe some did).
        """
        direct = self.direct
        if direct is None:
            return 1 if self.send(user, data) else 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def done(result: int | PushwireError) -> None:
            if future.done():
                return
            if isinstance(result, PushwireError):
                future.set_exception(result)
            else:
                future.set_result(result)

        direct.send_direct(user, data, done)
        return await future

    def _deliver_direct(self, user: str, message_id: str, data: Data) -> None:
        """The broker hands over a direct message to `user`: to each session of it here (and
        to the sessions being handed over to here)."""
        for arrived in self._adopting.get(user, ()):
            if len(arrived) < self.config.max_unacked:
                arrived.append((message_id, data))
            else:
                log.warning("direct message to %r dropped: hand-over buffer full", user)
        sessions = self._users.get(user)
        if not sessions:
            return  # its last session here ended while the message was on its way
        for session in list(sessions):
            self.send_to_session(session, data)
            session.last_direct = message_id

    def _listen(self, user: str) -> asyncio.Future[None]:
        assert self.direct is not None
        ready = self._listening[user] = asyncio.ensure_future(self.direct.listen_user(user))
        ready.add_done_callback(_log_failure)
        return ready

    async def prepare_user(self, user: str | None) -> None:
        """Make sure this process receives `user`'s direct messages (the broker confirmed it)
        before a session of `user` opens here and is told so: a direct message sent after that
        reaches it. Nothing to do with the in-memory broker. Pair with `open_session` (or
        `adopt`) without awaiting in between, or with `release_user` if none opens."""
        if user is None or self.direct is None:
            return
        ready = self._listening.get(user)
        if ready is None:
            ready = self._listen(user)
        await asyncio.shield(ready)

    def release_user(self, user: str) -> None:
        """Stop listening to `user` when no session of it is left here."""
        if user in self._users or self.direct is None:
            return
        if self._listening.pop(user, None) is not None:
            self._run(self.direct.unlisten_user(user))

    def send_to_session(self, session: Session, data: Data) -> None:
        """A direct message to one session; a session over its unacknowledged bounds is closed
        with 4003 (its client reconnects as a new session and is told so)."""
        try:
            session.send(data)
        except SessionOverflow as exc:
            log.info("session %s overflowed: %s", session.id, exc)
            reason = str(exc)
            transport = session.transport
            if transport is not None:
                error = {"type": "error", "code": "overflow", "message": reason}
                transport.write(transport.framing.frame_control(error))
                transport.close(4003, "unacknowledged messages over the bound")
            self.close_session(session, 4003, reason)

    def _deliver(self, message: Message) -> None:
        """The broker hands over a channel message: it joins this turn's batch."""
        channel = message.channel
        if channel not in self._channels:
            return
        pending = self._pending.get(channel)
        if pending is None:
            self._pending[channel] = [message]
        else:
            pending.append(message)
        self._pending_bytes += len(message.data)
        if self._pending_bytes > MAX_BATCH_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Fan out every pending channel message now: each message framed once per framing,
        one write per subscriber per channel."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        self._pending_bytes = 0
        stats = self.stats
        for channel, messages in pending.items():
            state = self._channels.get(channel)
            if state is None:
                continue
            if state.hold:
                self._pending[channel] = messages  # a catch-up is in progress: wait
                continue
            messages = _fresh(state, messages)
            if not messages:
                continue
            for framing, members in state.members.items():
                if len(messages) == 1:
                    frame = framing.frame_message(messages[0])
                else:
                    frame = b"".join([framing.frame_message(m) for m in messages])
                stats.frames_encoded += len(messages)
                stats.deliveries += len(members) * len(messages)
                for transport in members.values():
                    transport.write(frame)

    async def recover(self, channels: Iterable[str]) -> None:
        """After the broker lost its connection: fan out what history holds beyond the last
        position each channel reached here, or tell its subscribers what is lost (`gap`)."""
        for channel in channels:
            state = self._channels.get(channel)
            if state is None or state.epoch is None:
                continue
            since = Position(state.epoch, state.offset)
            with self.holding(channel):
                try:
                    history = await self.broker.history(channel, since)
                except PushwireError as exc:
                    log.warning("cannot recover %s after a broker outage: %s", channel, exc)
                    continue
                if not history.complete:
                    first = (
                        history.messages[0].offset
                        if history.messages
                        else history.position.offset + 1
                    )
                    self._tell_gap(channel, since, Position(history.position.epoch, first - 1))
                    state.epoch, state.offset = history.position.epoch, first - 1
                for message in history.messages:
                    self._deliver(message)

    def _tell_gap(self, channel: str, since: Position, last_lost: Position) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        gap = {
            "type": "gap",
            "channel": channel,
            "from": {"epoch": since.epoch, "offset": since.offset},
            "to": {"epoch": last_lost.epoch, "offset": last_lost.offset},
        }
        for framing, members in state.members.items():
            frame = framing.frame_control(gap)
            for transport in members.values():
                transport.write(frame)

    def _resubscribed(self, channels: frozenset[str]) -> None:
        self._run(self.recover(channels))
        self._run(self._resnapshot(channels))

    # -- presence ---------------------------------------------------------------------------

    async def presence(self, channel: str) -> PresenceSnapshot:
        """Who is in `channel` on every node: the count and at most `presence_max_members`
        entries (JSON bytes, see pushwire.presence).

        Raises:
            BadRequest: invalid channel name.
            Unavailable: the broker cannot be reached.
        """
        self.check_channel(channel)
        return await self.broker.presence(channel, self.config.presence_max_members)

    async def watch_presence(self, session: Session, channel: str) -> None:
        """Send `session` (subscribed to `channel`) the channel's members, then every `join`
        and `leave` after them, each once and in order.

        Raises:
            Unavailable: the broker cannot be reached (the session is no watcher then).
        """
        state = self._channels.get(channel)
        if state is None or channel not in session.channels:
            return
        state.presence_hold += 1  # events wait while the snapshot is read, then follow it
        try:
            snapshot = await self.presence(channel)
            transport = session.transport
            if channel in session.channels and transport is not None:
                transport.write(transport.framing.frame_control(snapshot_fields(snapshot)))
                state.watchers[session] = transport
                state.skip[session] = snapshot.version
        finally:
            state.presence_hold -= 1
            if not state.presence_hold:
                self._flush_presence(channel)
                if not (state.count or state.hold) and self._channels.get(channel) is state:
                    del self._channels[channel]
                    self._run(self.broker.unsubscribe(channel))

    async def _resnapshot(self, channels: Iterable[str]) -> None:
        """After the broker lost its connection, events may be lost: a fresh snapshot to
        every watcher of these channels."""
        for channel in channels:
            state = self._channels.get(channel)
            if state is None or not state.watchers:
                continue
            state.presence_hold += 1
            try:
                snapshot = await self.presence(channel)
            except PushwireError as exc:
                log.warning("cannot read presence of %s after a broker outage: %s", channel, exc)
                continue
            finally:
                state.presence_hold -= 1
            fields = snapshot_fields(snapshot)
            for session, transport in state.watchers.items():
                transport.write(transport.framing.frame_control(fields))
                state.skip[session] = snapshot.version
            self._flush_presence(channel)

    def _presence_event(self, event: PresenceEvent) -> None:
        """The broker reports a join or leave: it goes out at the end of this turn."""
        state = self._channels.get(event.channel)
        if state is None or not (state.watchers or state.presence_hold):
            return
        state.presence_pending.append(event)
        if len(state.presence_pending) == 1 and not state.presence_hold:
            asyncio.get_running_loop().call_soon(self._flush_presence, event.channel)

    def _flush_presence(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is None or state.presence_hold or not state.presence_pending:
            return
        events, state.presence_pending = state.presence_pending, []
        channel_json = orjson.dumps(channel).decode()
        frames: dict[Framing, list[tuple[int, bytes]]] = {}
        joined: dict[Framing, bytes] = {}
        skip = state.skip
        for session, transport in state.watchers.items():
            framing = transport.framing
            framed = frames.get(framing)
            if framed is None:
                framed = frames[framing] = [
                    (event.version, framing.frame_control(event_fields(event, channel_json)))
                    for event in events
                ]
                joined[framing] = b"".join(frame for _, frame in framed)
            seen = skip.get(session)
            if seen is None:
                transport.write(joined[framing])
                continue
            fresh = [frame for version, frame in framed if version > seen]
            if fresh:
                del skip[session]  # past its snapshot: every later event is news to it
                transport.write(b"".join(fresh))

    # -- housekeeping -----------------------------------------------------------------------

    def _run(self, result: object) -> None:
        """Run a handler's or broker's coroutine in the background, logging its failure."""
        if not inspect.isawaitable(result):
            return
        task = asyncio.ensure_future(result)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())


def snapshot_fields(snapshot: PresenceSnapshot) -> dict[str, Any]:
    """The `presence` envelope of a snapshot (the entries go in as they are)."""
    return {
        "type": "presence",
        "channel": snapshot.channel,
        "count": snapshot.count,
        "members": orjson.Fragment(b"[" + b",".join(snapshot.entries) + b"]"),
        "truncated": snapshot.count > len(snapshot.entries),
    }


def event_fields(event: PresenceEvent, channel_json: str) -> dict[str, Any]:
    """The `join` or `leave` envelope of an event."""
    return {
        "type": event.kind,
        "channel": orjson.Fragment(channel_json),
        "count": event.count,
        "member": orjson.Fragment(event.entry),
    }
