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

from .broker.base import Broker
from .broker.memory import MemoryBroker
from .config import Config
from .errors import BadRequest, Forbidden, LimitReached, PushwireError
from .message import Data, Message, Position
from .session import (
    MemorySessionStore,
    Session,
    SessionMigration,
    SessionOverflow,
    SessionStore,
    new_session_id,
)
from .transports.base import Framing, Transport

__all__ = ["ConnectRequest", "Hub", "HubStats"]

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
    watchers: dict[Session, Transport] = field(default_factory=dict)
    count: int = 0
    presence_dirty: bool = False
    # The broker subscription of this process (done once the broker confirmed it).
    ready: asyncio.Future[None] | None = None
    # The last position fanned out here: anything at or before it is not sent twice.
    epoch: str | None = None
    offset: int = 0
    # Catch-ups in progress (a subscriber reading history, recovery after an outage):
    # while above 0, this channel's messages wait, so they go out after the history.
    hold: int = 0


ConnectHandler = Callable[[ConnectRequest], "str | Awaitable[str | None] | None"]
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
        self.broker: Broker = broker or MemoryBroker(self.config.history_size)
        self.broker.attach(self._deliver)
        if hasattr(self.broker, "on_resubscribed"):
            # A broker that can lose its connection says which channels may have gaps.
            self.broker.on_resubscribed = self._resubscribed
        self.stats = HubStats()
        self._channels: dict[str, _Channel] = {}
        self._users: dict[str, dict[Session, None]] = {}
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
        """Register `handler(request) -> user id | None`; raise `Forbidden` to refuse."""
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
        """Run the connect handler: the user id to use, or `Forbidden`."""
        if self._connect_handler is None:
            return request.user
        user = await _maybe_await(self._connect_handler(request))
        if user is not None and not isinstance(user, str):
            raise TypeError(f"connect handler must return str or None, not {type(user)}")
        return user

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
            self.unsubscribe(session, channel)
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
                self.unsubscribe(session, channel)
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
    ) -> Session:
        """A session handed over by another process, attached to `transport` here (under a
        new id): its direct-message count and the messages not acknowledged yet carry on."""
        session = self.open_session(transport, user, info, resumable=True)
        session.seq, session.acked = seq, acked
        kept = session.unacked = deque(unacked)
        session.unacked_bytes = sum(len(data) for _, data in kept)
        return session

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
        if session.user is not None:
            sessions = self._users.get(session.user)
            if sessions is not None:
                sessions.pop(session, None)
                if not sessions:
                    del self._users[session.user]

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

    def subscribe(self, session: Session, channel: str, presence: bool = False) -> None:
        """Add a session to a channel now (authorisation is `authorize_subscribe`'s job)."""
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
            self._presence_changed(channel, state)
        if presence and session not in state.watchers:
            state.watchers[session] = transport
            self._presence_changed(channel, state)

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

    def unsubscribe(self, session: Session, channel: str) -> None:
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
        state.count -= 1
        if state.count == 0 and not state.hold:
            del self._channels[channel]
            self._run(self.broker.unsubscribe(channel))
        else:
            self._presence_changed(channel, state)

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

    def send(self, user: str, data: Data) -> int:
        """Send a direct message to every session of `user` in this process; returns how many."""
        sessions = self._users.get(user)
        if not sessions:
            return 0
        for session in list(sessions):
            self.send_to_session(session, data)
        return len(sessions)

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

    # -- presence ---------------------------------------------------------------------------

    def _presence_changed(self, channel: str, state: _Channel) -> None:
        # Joins arrive in bursts: one count per event-loop turn, not one per join.
        if state.watchers and not state.presence_dirty:
            state.presence_dirty = True
            asyncio.get_running_loop().call_soon(self._send_presence, channel)

    def _send_presence(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        state.presence_dirty = False
        frames: dict[Framing, bytes] = {}
        for transport in state.watchers.values():
            framing = transport.framing
            frame = frames.get(framing)
            if frame is None:
                frame = frames[framing] = framing.frame_presence(channel, state.count)
            transport.write(frame)

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
