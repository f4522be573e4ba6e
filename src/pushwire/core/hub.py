"""The hub: the app's handlers and the core's public API, in front of the parts that do the work.

It knows no transport and no other process. Its parts, each a plain object that is handed
what it works with:

- `access` (identity.py): the connect and subscribe handlers, channel names;
- `channels` (channels.py): who is subscribed here, batching and encode-once fan-out,
  catch-ups and recovery after a broker outage;
- presence (presence.py): members announced through the broker, watchers fed;
- `direct_messages` (direct.py): the sessions of each user and their direct messages;
- `lifecycle` (lifecycle.py): opening, detaching, resuming, handing over and closing sessions;
- `expiry` (expiry.py): closing the connections whose token expired (close 4005).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..auth.namespaces import AUTHENTICATED, OPEN, Namespace, Namespaces
from ..auth.tokens import TokenVerifier
from ..broker.base import Broker, DirectBroker, DirectSent
from ..broker.inbox import InboxLimits
from ..broker.memory import MemoryBroker
from ..clock import LOOP_CLOCK, Clock
from ..config import Config
from ..errors import Forbidden, PushwireError
from ..message import Data, Message, check_idempotency_key
from ..presence import PresenceSnapshot
from .admission import Admission
from .budget import machine_budget
from .channels import Channels, HubStats
from .direct import DirectMessages
from .expiry import TokenExpiry
from .identity import Access, Proxy
from .lifecycle import SessionLifecycle
from .presence import Presence
from .sessions import MemorySessionStore, Session, SessionMigration, SessionStore
from .tasks import BackgroundTasks, maybe_await, settling

__all__ = ["Hub", "MessageHandler"]

F = TypeVar("F", bound=Callable[..., Any])

MessageHandler = Callable[[Session, Data], "Awaitable[None] | None"]


class Hub:
    """Channels, direct push to users, presence, and the app's handlers.

    Args:
        broker: where channel messages get their offsets and reach other processes;
            the in-memory broker by default.
        config: limits (`max_subscriptions`, `max_channel_name`, `session_grace`, ...).
        store: where sessions are kept between connections; this process's memory by
            default.
        clock: times what the hub waits for (a detached session's grace); the event loop's
            by default.
        namespaces: the channels' rules (`pushwire.auth.namespaces`); None: one rule for
            every channel, open to anyone, or `authenticated` once tokens are configured.
        tokens: checks connection and subscription tokens; by default built from the
            config's `jwt_*` settings, None when none is set (an open server).
        proxy: the app's backend, asked about connects, subscriptions and publishes
            (`pushwire.auth.proxy.BackendProxy.from_config(config)`); it is required when
            the config names a proxy URL.

    Raises:
        ValueError: the config names a proxy URL and no `proxy` is given (the server would
            be open where a backend was meant to decide).
    """

    def __init__(
        self,
        broker: Broker | None = None,
        config: Config | None = None,
        store: SessionStore | None = None,
        clock: Clock = LOOP_CLOCK,
        *,
        namespaces: Iterable[Namespace] | None = None,
        tokens: TokenVerifier | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        self.config = config = config or Config()
        if proxy is None and (
            config.connect_proxy or config.subscribe_proxy or config.publish_proxy
        ):
            raise ValueError(
                "the config names a backend proxy: give the hub one, "
                "Hub(proxy=pushwire.auth.proxy.BackendProxy.from_config(config))"
            )
        #: Where every timer of the core (and of the doors serving this hub) reads the time.
        self.clock = clock
        self.broker: Broker = broker or MemoryBroker(
            config.history_size,
            history_ttl=config.history_ttl,
            history_bytes=config.history_bytes,
            history_total_bytes=config.history_total_bytes
            or machine_budget(config.memory_budget) // 2,
            idempotency_ttl=config.idempotency_ttl,
            max_idempotency_keys=config.max_idempotency_keys,
            inbox=InboxLimits(
                config.inbox_size, config.inbox_bytes, config.inbox_ttl, config.max_inboxes
            ),
            clock=clock,
        )
        #: The users' inboxes: where direct messages get their positions and are kept.
        self.direct: DirectBroker = self.broker.direct
        #: Fetches sessions held by other processes on resumption (None: one process).
        self.migration: SessionMigration | None = None
        self.stats = HubStats()
        self._message_handler: MessageHandler | None = None

        self._tasks = tasks = BackgroundTasks()
        if tokens is None and (config.jwt_secret or config.jwt_public_key_file or config.jwks_file):
            tokens = TokenVerifier.from_files(
                secret=config.jwt_secret,
                public_key_file=config.jwt_public_key_file,
                jwks_file=config.jwks_file,
                audience=config.jwt_audience,
                issuer=config.jwt_issuer,
                leeway=config.jwt_leeway,
            )
        rules = None
        if namespaces is not None:
            authenticating = tokens is not None or (proxy is not None and proxy.connects)
            rules = Namespaces(
                namespaces,
                AUTHENTICATED if authenticating else OPEN,
                history_size=config.history_size,
                history_ttl=config.history_ttl,
            )
            # A namespace may keep more or less history than the server's default.
            self.broker.set_history_policy(rules.history_bounds)
        self.access = Access(config, clock, tokens=tokens, namespaces=rules, proxy=proxy)
        self._presence = Presence(self.broker, config)
        self.channels = Channels(self.broker, config, self._presence, self.stats, tasks)
        self.direct_messages = DirectMessages(config, self.direct, tasks)
        self.lifecycle = SessionLifecycle(
            store if store is not None else MemorySessionStore(),
            config,
            clock,
            self.channels,
            self.direct_messages,
            tasks,
            # A token's `exp` is read on the verifier's wall clock, with its leeway.
            expiry=TokenExpiry(
                clock,
                wall=tokens.wall if tokens is not None else time.time,
                leeway=tokens.leeway if tokens is not None else config.jwt_leeway,
            ),
        )
        #: The bounds of new sessions (handshakes, sessions per address, user, in all): the
        #: lifecycle's. (Attributes, not properties: each connection's opening reads them.)
        self.admission: Admission = self.lifecycle.admission
        #: Closes the connections of sessions whose token expired (close 4005).
        self.expiry: TokenExpiry = self.lifecycle.expiry

        self.broker.attach(self.channels.deliver)
        self.broker.attach_presence(self._presence.event)
        if isinstance(self.broker, MemoryBroker):  # its events reach this process only
            self.broker.attach_presence_watched(self._presence.watched)
        self.direct.attach_direct(self.direct_messages.deliver)
        # A broker that can lose its connection says which channels may have gaps.
        self.broker.attach_resubscribed(self._resubscribed)

    # -- handlers the app registers ---------------------------------------------------------

    def on_connect(self, handler: F) -> F:
        """Register `handler(request)`; raise `Forbidden` to refuse.

        It returns the user id (`str`) or None, or a mapping `{"user": id or None, "info":
        {...}}`, or an `Identity`: `info` is public, shown with the session in presence to
        the members of its channels; its JSON is bounded by `max_presence_info` bytes.
        """
        self.access.connect_handler = handler
        return handler

    def on_message(self, handler: F) -> F:
        """Register `handler(session, data)` for messages sent to the general endpoint."""
        self._message_handler = handler
        return handler

    def on_subscribe(self, handler: F) -> F:
        """Register `handler(session, channel) -> bool`; False or `Forbidden` refuses. It runs
        after the channel's namespace rule let the subscription through, on every door."""
        self.access.subscribe_handler = handler
        return handler

    def on_publish(self, handler: F) -> F:
        """Register `handler(session, channel, data) -> bool`; False or `Forbidden` refuses.
        It runs for every publish a client makes (not the server's own), on every door,
        after the channel's namespace rule let it through."""
        self.access.publish_handler = handler
        return handler

    def on_disconnect(self, handler: F) -> F:
        """Register `handler(session, code, reason)`, called once per session."""
        self.lifecycle.disconnect_handler = handler
        return handler

    @property
    def has_connect_handler(self) -> bool:
        return self.access.has_connect_handler

    async def handle_message(self, session: Session, data: Data) -> None:
        """Run the message handler on what `session` sent to the general endpoint."""
        if self._message_handler is not None:
            await maybe_await(self._message_handler(session, data))

    # -- sessions ---------------------------------------------------------------------------

    @property
    def sessions(self) -> Mapping[str, Session]:
        """The sessions of this hub's store, by id (detached ones waiting out their grace
        included)."""
        return self.lifecycle.store

    @property
    def new_session_id(self) -> Callable[[], str]:
        """Makes the id of each new session (session routing puts the node's id in it)."""
        return self.lifecycle.new_session_id

    @new_session_id.setter
    def new_session_id(self, make: Callable[[], str]) -> None:
        self.lifecycle.new_session_id = make

    def close_session(self, session: Session, code: int, reason: str) -> None:
        """Forget a session for good; runs the disconnect handler once."""
        self.lifecycle.close(session, code, reason)

    def disconnect(self, user: str, reason: str = "disconnected by the server") -> int:
        """Close every session of `user` that this process holds, for good: connected ones
        get close 4101 (a client stops and does not reconnect by itself), detached ones are
        forgotten; none can be resumed. Returns how many sessions were closed. Sessions on
        other nodes are not reached."""
        closing = [session for session in self.sessions.values() if session.user == user]
        for session in closing:
            session.close(Forbidden.close_code, reason)
            self.close_session(session, Forbidden.close_code, reason)
        return len(closing)

    # -- publishing -------------------------------------------------------------------------

    def publish_nowait(
        self,
        channel: str,
        data: Data,
        done: Callable[[Message | PushwireError], None] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Publish without waiting; publishes are delivered in call order. With an
        `idempotency_key` (valid: `check_idempotency_key`), a repeat within
        `idempotency_ttl` publishes nothing and `done` gets the first one's position."""
        stats = self.stats
        stats.published += 1
        stats.published_bytes += len(data)
        if idempotency_key is None:
            self.broker.publish(channel, data, done)
        else:
            self.broker.publish(channel, data, done, idempotency_key=idempotency_key)

    async def publish(
        self, channel: str, data: Data, *, idempotency_key: str | None = None
    ) -> Message:
        """Publish `data` to `channel` on every node; returns it with its position (with an
        `idempotency_key` seen before: the first publish's, and nothing is published).

        Raises:
            BadRequest: invalid channel name or idempotency key.
            Unavailable: the broker cannot take it now.
        """
        self.access.check_channel(channel)
        check_idempotency_key(idempotency_key)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.publish_nowait(channel, data, settling(future), idempotency_key=idempotency_key)
        return await future

    # -- direct messages --------------------------------------------------------------------

    @property
    def spans_nodes(self) -> bool:
        """Whether the broker reaches other processes with direct messages (Redis)."""
        return self.direct.spans_processes

    def send(self, user: str, data: Data) -> int:
        """Send a direct message to every session of `user`; returns how many sessions of
        this process get it (see `DirectMessages.send`)."""
        return self.direct_messages.send(user, data)

    async def send_everywhere(self, user: str, data: Data) -> DirectSent:
        """Store a direct message in `user`'s inbox and send it to every session of the user
        on every node; returns it with its inbox position and how many processes received
        it (see `DirectMessages.send_everywhere`).

        Raises:
            Unavailable: the broker cannot take it now.
        """
        return await self.direct_messages.send_everywhere(user, data)

    # -- presence ---------------------------------------------------------------------------

    async def presence(self, channel: str) -> PresenceSnapshot:
        """Who is in `channel` on every node: the count and at most `presence_max_members`
        entries (JSON bytes, see pushwire.presence).

        Raises:
            BadRequest: invalid channel name.
            Unavailable: the broker cannot be reached.
        """
        return await self._presence.snapshot(channel)

    async def watch_presence(self, session: Session, channel: str) -> None:
        """Send `session` (subscribed to `channel`) the channel's members, then every `join`
        and `leave` after them, each once and in order.

        Raises:
            Unavailable: the broker cannot be reached (the session is no watcher then).
        """
        # The events that follow the snapshot come through the channel's subscription.
        with self.channels.keeping(channel):
            await self._presence.watch(session, channel)

    # -- the broker's outages ---------------------------------------------------------------

    def _resubscribed(self, channels: frozenset[str]) -> None:
        self._tasks.run(self.channels.recover(channels))
        self._tasks.run(self._presence.resnapshot(channels))
        # The users' direct messages published meanwhile did not come live either.
        self._tasks.run(self.direct_messages.catch_up())
