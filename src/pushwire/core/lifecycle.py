"""A session's life here: opened, detached for a grace, resumed, handed over, adopted, closed.

A resumable session (pushwire.v1) outlives its connection for `session_grace` seconds (on the
hub's clock): it leaves its channels meanwhile (the client resubscribes with its positions)
but stays a presence member, so a reconnection does not flap. A session moving to another
process is handed over there, not closed: the disconnect handler runs once per session, when
it ends for good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..clock import Clock
from ..config import Config
from .admission import Admission
from .channels import Channels
from .direct import DirectMessages
from .expiry import TokenExpiry
from .sessions import Session, SessionStore, new_session_id, new_session_ids
from .tasks import BackgroundTasks
from .transport import Transport

__all__ = ["DisconnectHandler", "SessionLifecycle"]

DisconnectHandler = Callable[[Session, int, str], "Awaitable[None] | None"]


class SessionLifecycle:
    """Opens, detaches, resumes, hands over, adopts and closes sessions.

    Args:
        store: where sessions are kept between connections (read as `Hub.sessions`).
        config: `session_grace`.
        clock: times a detached session's grace.
        channels: sessions leave their channels when detached or closed.
        direct_messages: a session gets its user's direct messages while open.
        tasks: runs the disconnect handler.
        expiry: closes sessions whose token expired (one on `clock`, the wall clock and
            `jwt_leeway` when None); read as `Hub.expiry`.
    """

    def __init__(
        self,
        store: SessionStore,
        config: Config,
        clock: Clock,
        channels: Channels,
        direct_messages: DirectMessages,
        tasks: BackgroundTasks,
        *,
        expiry: TokenExpiry | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.store = store
        #: The session bounds; counts every session this process holds.
        self.admission = admission or Admission(config, clock)
        self.expiry = expiry or TokenExpiry(clock, leeway=config.jwt_leeway)
        self._config = config
        self._clock = clock
        self._channels = channels
        self._direct_messages = direct_messages
        self._tasks = tasks
        #: Makes the id of each new session (session routing puts the node's id in it).
        self.new_session_id: Callable[[], str] = new_session_id
        #: Set by `Hub.on_disconnect`.
        self.disconnect_handler: DisconnectHandler | None = None

    def open(
        self,
        transport: Transport,
        user: str | None = None,
        info: Mapping[str, Any] | None = None,
        *,
        resumable: bool = False,
        endpoint: str = "",
        secret: str | None = None,
        session_id: str | None = None,
        address: str | None = None,
    ) -> Session:
        """A new session attached to `transport` (under `session_id`, or a new id), from
        `address` (the client's IP, counted for `max_sessions_per_ip`).
        `resumable` sessions (pushwire.v1) survive `session_grace` seconds detached; their
        user's direct messages wait for `DirectMessages.recover` (after the welcome).
        `endpoint`: the key of the endpoint opening it, the only one that may resume it.
        `secret`: its resume secret (a new random one when None)."""
        public_id = None
        if not session_id:
            make_id = self.new_session_id
            if make_id is new_session_id:  # (the usual: both ids from one draw of the pool)
                session_id, public_id = new_session_ids()
            else:
                session_id = make_id()
        # (positional: keywords make a class call build a dict)
        session = Session(
            transport, user, info, resumable, session_id, endpoint, secret, address, public_id
        )
        self.store.add(session)
        self.admission.opened(session)
        self._direct_messages.add(session)
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
            self.close(session, code, reason)
            return
        # Still a presence member until the grace ends: a reconnection does not flap.
        self._channels.unsubscribe_all(session, leave=False)
        session.transport = None
        if session.expiry is not None:
            session.expiry.cancel()
        session.expiry = self._clock.call_later(
            self._config.session_grace, self.close, session, code, reason
        )

    def claim(self, session_id: str, secret: object, endpoint: str) -> Session | None:
        """The resumable session `session_id` of `endpoint` when `secret` is its resume
        secret; None otherwise (unknown, expired, another endpoint's, or a wrong secret),
        and then nothing about the session changes."""
        session = self.store.get(session_id)
        if (
            session is None
            or session.closed
            or not session.resumable
            or session.endpoint != endpoint
            or not session.proves(secret)
        ):
            return None
        return session

    def resume(
        self, session_id: str, secret: object, endpoint: str, transport: Transport
    ) -> Session | None:
        """Attach a returning client to its session, or None when it may not (see `claim`):
        a hello naming a session without its secret, or at another endpoint, is answered as
        one naming an unknown session, and the session it named is not touched.

        A session still attached elsewhere is taken over: its old connection is closed 4004.
        Direct messages wait for `DirectMessages.recover` (after the welcome), which replays
        what the client missed from the user's inbox.
        """
        session = self.claim(session_id, secret, endpoint)
        if session is None:
            return None
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        old = session.transport
        if old is not None and old is not transport:
            self._channels.unsubscribe_all(session, leave=False)
            session.transport = None
            old.close(4004, "session resumed on another connection")
        session.transport = transport
        session.attached += 1
        session.inbox_pending = [] if session.user is not None else None
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
        *,
        endpoint: str = "",
        secret: str | None = None,
        grants: frozenset[str] = frozenset(),
        token_expires: float | None = None,
        session_id: str | None = None,
    ) -> Session:
        """A session handed over by another process, attached to `transport` here (under
        `session_id`, or a new id): its user, info, endpoint, resume secret, its token's
        grants and expiry carry on. Its direct messages need nothing carried: the client
        names the last position it has in its user's inbox, and `DirectMessages.recover`
        replays the rest here."""
        session = self.open(
            transport,
            user,
            info,
            resumable=True,
            endpoint=endpoint,
            secret=secret,
            session_id=session_id,
        )
        session.grants = grants
        self.expiry.watch(session, token_expires)
        return session

    def close(self, session: Session, code: int, reason: str) -> None:
        """Forget a session for good; runs the disconnect handler once."""
        if session.closed:
            return
        self._forget(session)
        if self.disconnect_handler is not None:
            self._tasks.run(self.disconnect_handler(session, code, reason))

    def _forget(self, session: Session) -> None:
        session.closed = True
        self.admission.closed(session)
        self.expiry.forget(session)
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        self.store.remove(session.id)
        self._channels.unsubscribe_all(session, leave=True)
        self._direct_messages.remove(session)
