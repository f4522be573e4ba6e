"""Direct messages: to every session of a user, or to one session, kept until acknowledged.

With the in-memory broker the hub writes them to the user's sessions itself, at once. With a
broker that spans processes (`DirectBroker`), a direct message is published once through the
broker, and each process that holds a session of the user (this one too) receives it and
writes it to its own sessions: this process listens to a user from the opening of the user's
first session here until its last one ends.

A session handed over from another process is adopted here while the user's direct messages
keep flowing: those that arrive meanwhile are kept (`begin_adoption`) for the adopted session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..broker.base import DirectBroker
from ..config import Config
from ..errors import SessionOverflow
from ..message import Data
from .sessions import Session
from .tasks import BackgroundTasks, log_failure, settling

__all__ = ["DirectMessages"]

log = logging.getLogger("pushwire.hub")


class DirectMessages:
    """The sessions of each user here, and the direct messages written to them.

    Args:
        config: `max_unacked` (also the bound of a hand-over's buffer).
        direct: the broker's direct-message part when it spans processes (its delivery
            callback is wired to `deliver`); None: one process, written here at once.
        tasks: runs the broker's unlistens.
        close_session: ends a session for good (the session lifecycle's `close`), for a
            session over its unacknowledged bounds.
    """

    def __init__(
        self,
        config: Config,
        direct: DirectBroker | None,
        tasks: BackgroundTasks,
        close_session: Callable[[Session, int, str], None],
    ) -> None:
        self._config = config
        self._direct = direct
        self._tasks = tasks
        self._close_session = close_session
        self._users: dict[str, dict[Session, None]] = {}
        # Users whose direct messages this process listens to (DirectBroker only): done once
        # the broker confirmed it.
        self._listening: dict[str, asyncio.Future[None]] = {}
        # Direct messages that arrived for users whose session is being handed over to here.
        self._adopting: dict[str, list[list[tuple[str, Data]]]] = {}

    # -- the users' sessions ----------------------------------------------------------------

    def add(self, session: Session) -> None:
        """A session opened here: it gets its user's direct messages from now on."""
        user = session.user
        if user is None:
            return
        self._users.setdefault(user, {})[session] = None
        if self._direct is not None and user not in self._listening:
            self._listen(user)

    def remove(self, session: Session) -> None:
        """A session ended here: its user is no longer listened to when it was the last."""
        user = session.user
        if user is None:
            return
        sessions = self._users.get(user)
        if sessions is None:
            return
        sessions.pop(session, None)
        if not sessions:
            del self._users[user]
            self.release_user(user)

    async def prepare_user(self, user: str | None) -> None:
        """Make sure this process receives `user`'s direct messages (the broker confirmed it)
        before a session of `user` opens here and is told so: a direct message sent after that
        reaches it. Nothing to do with the in-memory broker. Pair with opening a session (or
        adopting one) without awaiting in between, or with `release_user` if none opens."""
        if user is None or self._direct is None:
            return
        ready = self._listening.get(user)
        if ready is None:
            ready = self._listen(user)
        await asyncio.shield(ready)

    def release_user(self, user: str) -> None:
        """Stop listening to `user` when no session of it is left here."""
        if user in self._users or self._direct is None:
            return
        if self._listening.pop(user, None) is not None:
            self._tasks.run(self._direct.unlisten_user(user))

    def _listen(self, user: str) -> asyncio.Future[None]:
        assert self._direct is not None
        ready = self._listening[user] = asyncio.ensure_future(self._direct.listen_user(user))
        ready.add_done_callback(log_failure)
        return ready

    # -- sending ----------------------------------------------------------------------------

    def send(self, user: str, data: Data) -> int:
        """Send a direct message to every session of `user`, in this process and, with a broker
        that spans processes, on every node; returns how many sessions of this process get it.

        In-memory broker: written at once, and the count is every session of the user. A
        broker spanning processes: published for every node without waiting (failures are
        logged; `send_everywhere` reports them); this process's sessions get it when it comes
        back from the broker.
        """
        sessions = self._users.get(user)
        direct = self._direct
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
        direct = self._direct
        if direct is None:
            return 1 if self.send(user, data) else 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        direct.send_direct(user, data, settling(future))
        return await future

    def send_to_session(self, session: Session, data: Data) -> None:
        """A direct message to one session; a session over its unacknowledged bounds is closed
        with 4003 (its client reconnects as a new session and is told so)."""
        try:
            session.send(data)
        except SessionOverflow as exc:
            log.info("session %s overflowed: %s", session.public_id, exc)
            reason = str(exc)
            transport = session.transport
            if transport is not None:
                error = {"type": "error", "code": "overflow", "message": reason}
                transport.write(transport.framing.frame_control(error))
                transport.close(4003, "unacknowledged messages over the bound")
            self._close_session(session, 4003, reason)

    def deliver(self, user: str, message_id: str, data: Data) -> None:
        """The broker hands over a direct message to `user`: to each session of it here (and
        to the sessions being handed over to here)."""
        for arrived in self._adopting.get(user, ()):
            if len(arrived) < self._config.max_unacked:
                arrived.append((message_id, data))
            else:
                log.warning("direct message to %r dropped: hand-over buffer full", user)
        sessions = self._users.get(user)
        if not sessions:
            return  # its last session here ended while the message was on its way
        for session in list(sessions):
            self.send_to_session(session, data)
            session.last_direct = message_id

    # -- hand-overs -------------------------------------------------------------------------

    def begin_adoption(self, user: str) -> list[tuple[str, Data]]:
        """Keep the direct messages to `user` arriving from now on (the user is listened to:
        `prepare_user`) in the list returned, for `SessionLifecycle.adopt`; `end_adoption`
        stops it. At most `max_unacked` are kept."""
        arrived: list[tuple[str, Data]] = []
        self._adopting.setdefault(user, []).append(arrived)
        return arrived

    def end_adoption(self, user: str, arrived: list[tuple[str, Data]]) -> None:
        """Stop keeping direct messages to `user` in `arrived` (from `begin_adoption`)."""
        lists = self._adopting.get(user)
        if lists is None:
            return
        with contextlib.suppress(ValueError):
            lists.remove(arrived)
        if not lists:
            del self._adopting[user]
