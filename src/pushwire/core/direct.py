"""Direct messages: each user's inbox, written to the user's sessions and recovered by position.

A direct message to a user is stored in the user's inbox by the broker (`DirectBroker`): it
gets the next position (epoch, offset) there, and every process holding a session of the
user receives it and writes it to those sessions (this process listens to a user from the
opening of the user's first session here until its last one ends). Nothing is kept per
session: a session that was away (dropped, expired, another device, a user offline) names
the last position it has and gets the rest from the inbox (`recover`), or a `gap` with the
exact range the inbox no longer holds, like a channel's subscriber.

Delivery is isolated: one session's failure is logged and closes that session's connection
(1011, the client comes back and recovers from its position); the user's other sessions get
the message all the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine
from dataclasses import dataclass
from typing import Any

from ..broker.base import DirectBroker, DirectSent, History
from ..config import Config
from ..errors import PushwireError
from ..message import Data, Message, Position
from .sessions import Session
from .tasks import BackgroundTasks, log_failure, settling
from .transport import Transport, write_failed

__all__ = ["DirectMessages", "Recovery"]

log = logging.getLogger("pushwire.hub")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `DirectMessages.read` found for a session: the client's position (`since`),
    where the inbox stands (`position`) and what it holds after `since` (`history`)."""

    since: Position | None
    position: Position
    history: History | None


class DirectMessages:
    """The sessions of each user here, the direct messages written to them, their recovery.

    Args:
        config: `inbox_size` (also the bound of what waits for a recovery to end).
        direct: the broker's inboxes (its delivery callback is wired to `deliver`).
        tasks: runs the broker's unlistens.
    """

    def __init__(self, config: Config, direct: DirectBroker, tasks: BackgroundTasks) -> None:
        self._config = config
        self._direct = direct
        self._spans = direct.spans_processes
        self._tasks = tasks
        # user -> its session here, or a dict of its sessions once it has several (a dict
        # per user was 184 bytes an idle subscriber where each has a user of its own).
        self._users: dict[str, Session | dict[Session, None]] = {}
        # Users whose direct messages this process listens to (brokers spanning processes
        # only): done once the broker confirmed it.
        self._listening: dict[str, asyncio.Future[None]] = {}

    # -- the users' sessions ----------------------------------------------------------------

    def add(self, session: Session) -> None:
        """A session opened here: it gets its user's direct messages from now on. A
        resumable session gets them once its inbox is recovered (`recover`: the welcome and
        what the client missed come first); until then they wait."""
        user = session.user
        if user is None:
            return
        if session.resumable:
            session.inbox_pending = []
        held = self._users.get(user)
        if held is None:
            self._users[user] = session
        elif isinstance(held, Session):
            if held is not session:
                self._users[user] = {held: None, session: None}
        else:
            held[session] = None
        if self._spans and user not in self._listening:
            self._listen(user)

    def remove(self, session: Session) -> None:
        """A session ended here: its user is no longer listened to when it was the last."""
        user = session.user
        if user is None:
            return
        held = self._users.get(user)
        if held is None or held is session:
            if held is not None:
                del self._users[user]
                self.release_user(user)
            return
        if isinstance(held, Session):
            return
        held.pop(session, None)
        if not held:
            del self._users[user]
            self.release_user(user)

    def _sessions(self, user: str) -> Collection[Session]:
        """The sessions of `user` here."""
        held = self._users.get(user)
        if held is None:
            return ()
        return (held,) if isinstance(held, Session) else held

    async def prepare_user(self, user: str | None) -> None:
        """Make sure this process receives `user`'s direct messages (the broker confirmed it)
        before a session of `user` opens here and is told so: a direct message sent after that
        reaches it. Nothing to do with the in-memory broker. Pair with opening a session (or
        adopting one) without awaiting in between, or with `release_user` if none opens."""
        if user is None or not self._spans:
            return
        ready = self._listening.get(user)
        if ready is None:
            ready = self._listen(user)
        await asyncio.shield(ready)

    def release_user(self, user: str) -> None:
        """Stop listening to `user` when no session of it is left here."""
        if user in self._users or not self._spans:
            return
        if self._listening.pop(user, None) is not None:
            self._tasks.run(self._direct.unlisten_user(user))

    def _listen(self, user: str) -> asyncio.Future[None]:
        ready = self._listening[user] = asyncio.ensure_future(self._direct.listen_user(user))
        ready.add_done_callback(log_failure)
        return ready

    def sessions_here(self, user: str) -> int:
        """How many sessions of `user` this process holds."""
        return len(self._sessions(user))

    # -- sending ----------------------------------------------------------------------------

    def send(self, user: str, data: Data) -> int:
        """Store a direct message in `user`'s inbox and send it to every session of the user
        on every node, without waiting; returns how many sessions of this process get it.

        In-memory broker: written at once. A broker spanning processes: stored and published
        without waiting (failures are logged; `send_everywhere` reports them); this process's
        sessions get it when it comes back from the broker.
        """
        count = len(self._sessions(user))
        self._direct.send_direct(user, data)
        return count

    async def send_everywhere(self, user: str, data: Data) -> DirectSent:
        """Store a direct message in `user`'s inbox and send it to every session of the user
        on every node; returns it with its position and how many processes received it live
        (in-memory broker: 1 when the user has a session here, else 0).

        Raises:
            Unavailable: the broker cannot take it now (nobody got it, or in the rare case of
                a connection lost after the broker took it, maybe some did).
        """
        if not self._spans:
            # One process: stored and delivered inside send_direct, nothing to wait for.
            here = user in self._users
            outcome: list[DirectSent | PushwireError] = []
            self._direct.send_direct(user, data, outcome.append)
            result = outcome[0]
            if isinstance(result, PushwireError):
                raise result
            return DirectSent(result.message, 1 if here else 0)
        future: asyncio.Future[DirectSent] = asyncio.get_running_loop().create_future()
        self._direct.send_direct(user, data, settling(future))
        return await future

    def deliver(self, user: str, message: Message) -> None:
        """The broker hands over a direct message to `user`: to each session of it here.
        One session's failure does not keep it from the others."""
        sessions = self._sessions(user)
        if not sessions:
            return  # its last session here ended while the message was on its way
        for session in list(sessions):
            pending = session.inbox_pending
            if pending is not None:
                self._hold(session, pending, message)
                continue
            try:
                session.write_direct(message)
            except Exception:
                transport = session.transport
                if transport is not None:
                    write_failed(transport)

    def _hold(self, session: Session, pending: list[Message], message: Message) -> None:
        """Keep `message` for a session whose inbox is being recovered, within a bound."""
        if len(pending) < max(self._config.inbox_size, 1):
            pending.append(message)
            return
        # Its client comes back and recovers from the last position it has: nothing lost.
        log.info("session %s: too many direct messages during its recovery", session.public_id)
        session.inbox_pending = None
        self._fail(session, 4000, "too many direct messages during recovery: reconnect")

    @staticmethod
    def _fail(session: Session, code: int = 1011, reason: str = "internal error") -> None:
        transport = session.transport
        if transport is None:
            return
        try:
            transport.close(code, reason)
        except Exception:
            log.exception("closing session %s failed", session.public_id)

    # -- recovery ---------------------------------------------------------------------------

    async def read(self, session: Session, since: Position | None) -> Recovery:
        """Before the welcome of `session` (its direct messages wait meanwhile): where its
        user's inbox stands, and what it holds after `since` (the last position the client
        has; None: nothing to replay). Pair with `replay` right after the welcome, without
        awaiting in between.

        Raises:
            Unavailable: the broker cannot answer (the hello is refused: the client comes
                back and asks again).
        """
        user = session.user
        assert user is not None
        if since is None:
            return Recovery(None, await self._direct.inbox_position(user), None)
        history = await self._direct.inbox_history(user, since)
        return Recovery(since, history.position, history)

    def start(self, session: Session, recovery: Recovery) -> Position:
        """The position the welcome names as `inbox`: where the client stands once the
        recovery is written. Without a position of its own, where the inbox stood, or just
        before the first direct message that arrived while it was read."""
        if recovery.since is not None:
            return recovery.since
        position = recovery.position
        pending = session.inbox_pending
        if pending:
            earliest = pending[0]
            if earliest.epoch == position.epoch and earliest.offset <= position.offset:
                return Position(position.epoch, earliest.offset - 1)
        return position

    def replay(self, session: Session, recovery: Recovery) -> None:
        """Right after the welcome: what the inbox holds after the client's position, or a
        `gap` first for what it no longer holds, then the live direct messages that waited
        (each once: those it has are not written again)."""
        start = self.start(session, recovery)
        session.inbox_epoch, session.inbox_offset = start.epoch, start.offset
        if recovery.history is not None and recovery.since is not None:
            self._replay(session, recovery.since, recovery.history)
        pending, session.inbox_pending = session.inbox_pending, None
        for message in pending or ():
            session.write_direct(message)

    def recover_later(self, session: Session, since: Position | None) -> None:
        """The inbox could not be read for the welcome: read it again, with backoff (0.1 s
        doubling to 5 s), while the session stays on its connection; then `replay`. Live
        direct messages wait meanwhile (bounded: `inbox_size`, then close 4000)."""
        self._tasks.run(self._retry(session, session.transport, since))

    async def _retry(self, session: Session, transport: object, since: Position | None) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            if session.transport is not transport or session.closed:
                return  # gone, or resumed elsewhere: that connection recovers
            if session.inbox_pending is None:
                return  # closed for too many waiting messages: its client comes back
            try:
                recovery = await self.read(session, since)
            except PushwireError as exc:
                log.debug("inbox of session %s still unavailable: %s", session.public_id, exc)
                delay = min(delay * 2, 5.0)
                continue
            if session.transport is transport and not session.closed:
                self.replay(session, recovery)
            return

    async def recover(self, session: Session, since: Position | None) -> Position | None:
        """`read`, then `replay` at once (a session resuming without a welcome to write, or
        a test); returns the position a welcome would name (None: no user, no inbox)."""
        if session.user is None:
            session.inbox_pending = None
            return None
        recovery = await self.read(session, since)
        start = self.start(session, recovery)
        self.replay(session, recovery)
        return start

    @staticmethod
    def _replay(session: Session, since: Position, history: History) -> None:
        """Write what `history` holds after `since` to `session`, a `gap` first for what it
        no longer holds (messages the session has already are not written again)."""
        transport = session.transport
        assert transport is not None
        position = history.position
        if session.inbox_epoch != since.epoch or session.inbox_offset > since.offset:
            session.inbox_epoch, session.inbox_offset = since.epoch, since.offset
        if not history.complete:
            first = history.messages[0].offset if history.messages else position.offset + 1
            gap = {
                "type": "gap",
                "from": {"epoch": since.epoch, "offset": since.offset},
                "to": {"epoch": position.epoch, "offset": first - 1},
            }
            transport.write(transport.framing.frame_control(gap))
            session.inbox_epoch, session.inbox_offset = position.epoch, first - 1
        for message in history.messages:
            session.write_direct(message)

    def catch_up(self) -> Coroutine[Any, Any, None]:
        """After the broker lost its connection and restored it: the direct messages this
        process's sessions may have missed meanwhile (they were not received live), from
        each user's inbox after the last one each session got, or a `gap`. A session whose
        inbox cannot be read is closed with 4000: its client comes back and recovers.

        Every session's live direct messages wait from the moment this is called (call it
        from the broker's `resubscribed` callback, before the next live message is read):
        the inboxes are read one after the other, and a session whose turn has not come yet
        must not get a live message past what it missed (its client would see the offsets
        jump and report a gap for messages the inbox still holds). Await the result to run
        the reads."""
        waiting = []
        for user in self._users:
            for session in self._sessions(user):
                transport = session.transport
                epoch = session.inbox_epoch
                if transport is None or session.inbox_pending is not None or epoch is None:
                    continue  # away, or being recovered already
                session.inbox_pending = []  # live ones wait for the replay
                waiting.append((user, session, transport, Position(epoch, session.inbox_offset)))
        return self._catch_up(waiting)

    async def _catch_up(self, waiting: list[tuple[str, Session, Transport, Position]]) -> None:
        for user, session, transport, since in waiting:
            try:
                history: History | None = await self._direct.inbox_history(user, since)
            except PushwireError as exc:
                log.warning("cannot recover direct messages of %r: %s", user, exc)
                history = None
            except BaseException:
                for _user, later, _transport, _since in waiting:
                    if later.transport is _transport and later.inbox_pending is not None:
                        self._fail(later, 1001, "going away")
                raise
            if session.transport is not transport or session.closed:
                continue  # resumed on another connection meanwhile: that one recovers
            if history is None:
                # Live ones keep waiting (nothing past the hole reaches this connection): its
                # client comes back and recovers from the last position it has.
                self._fail(session, 4000, "inbox unavailable: reconnect")
                continue
            pending, session.inbox_pending = session.inbox_pending, None
            try:
                self._replay(session, since, history)
                for message in pending or ():
                    session.write_direct(message)
            except Exception:
                log.exception("recovering session %s failed", session.public_id)
                self._fail(session)
