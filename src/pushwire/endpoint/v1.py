"""pushwire.v1: `hello` first, then subscribe / unsubscribe / publish / send / presence /
refresh."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Final

from ..core import ConnectRequest, Identity, Session, snapshot_fields
from ..envelope import Envelope, decode
from ..errors import (
    BadRequest,
    Forbidden,
    PushwireError,
    RemoteError,
    TokenExpired,
    Unauthorized,
    Unavailable,
    UnknownType,
    backoff_seconds,
)
from ..message import Data, Message, Position, check_idempotency_key
from ..parsing import MAX_POSITION, echoable_id, quoted
from .base import Handler, write_recovery

__all__ = ["EnvelopeHandler"]

#: Characters of a `since` epoch, at most (the server's are 8 hexadecimal digits).
MAX_EPOCH: Final = 64

#: Characters of a session id in a `hello`, at most (the server's are 22, or 22 after a
#: node's id and a dot with a Redis broker): an unknown one is echoed in the welcome.
MAX_SESSION_ID: Final = 128

#: What a pushwire.v1 session on /echo may not do: it echoes, and reaches nothing else.
ECHO_REFUSED: Final = frozenset({"subscribe", "publish", "presence", "refresh"})
ECHO_ONLY: Final = "/echo is an echo service"


class EnvelopeHandler(Handler):
    """pushwire.v1: `hello` first, then subscribe / unsubscribe / publish / send / ping."""

    __slots__ = ()

    def _step(self, data: Data) -> Awaitable[None] | None:
        try:
            envelope = decode(data)
        except BadRequest as exc:
            self._error(None, exc)
            self.transport.close(4100, str(exc)[:120])
            return None
        request_id = envelope.fields.get("id")
        if request_id is not None and not echoable_id(request_id, self.hub.config.max_request_id):
            # Not echoed (an answer would carry it back): refused without it.
            limit = self.hub.config.max_request_id
            self._error(
                None,
                BadRequest(
                    f'"id" must be a string of at most {limit} characters '
                    "or a number of at most 2^53"
                ),
            )
            return None
        try:
            if self.session is None:
                if envelope.type != "hello":
                    raise BadRequest(f"expected hello first, got {quoted(envelope.type)}")
                return self._hello(envelope)
            if self.endpoint.kind == "echo" and envelope.type in ECHO_REFUSED:
                raise Forbidden(ECHO_ONLY)
            return self._dispatch(self.session, envelope, request_id)
        except RemoteError as exc:
            self._failed(exc, request_id)
        return None

    def _dispatch(
        self, session: Session, envelope: Envelope, request_id: object
    ) -> Awaitable[None] | None:
        kind = envelope.type
        fields = envelope.fields
        if kind == "publish":
            access = self.hub.access
            channel = access.check_channel(fields.get("channel"))
            if envelope.data is None:
                raise BadRequest("publish without data")
            key = check_idempotency_key(fields.get("idempotency_key"))
            access.check_publish(session, channel)
            if access.publish_hooked:
                return self._publish_hooked(session, channel, envelope.data, request_id, key)
            self.hub.publish_nowait(
                channel, envelope.data, self._answer_publish(request_id), idempotency_key=key
            )
        elif kind == "send":
            if envelope.data is None:
                raise BadRequest("send without data")
            return self._send(session, envelope.data)
        elif kind == "subscribe":
            return self._subscribe(session, fields, request_id)
        elif kind == "presence":
            return self._presence(session, fields, request_id)
        elif kind == "unsubscribe":
            channel = self.hub.access.check_channel(fields.get("channel"))
            self.hub.channels.unsubscribe(session, channel)
            self._reply({"type": "unsubscribed", "id": request_id, "channel": channel})
        elif kind == "refresh":
            return self._refresh(session, fields, request_id)
        elif kind == "ping":
            self._reply({"type": "pong"})
        elif kind == "pong":
            pass  # the answer to a server heartbeat (TCP); receiving it is all that matters
        elif kind == "close":
            # The client ends its session on purpose (transports without a close handshake).
            self.hub.close_session(session, 1000, "closed by the client")
            self.transport.close(1000, "closed by the client")
        elif kind == "hello":
            raise BadRequest("hello was already received")
        else:
            raise UnknownType(f"unknown envelope type {quoted(kind)}")
        return None

    async def _hello(self, envelope: Envelope) -> None:
        fields = envelope.fields
        user, token = fields.get("user"), fields.get("token")
        if user is not None and not isinstance(user, str):
            raise BadRequest('"user" must be a string')
        if token is not None and not isinstance(token, str):
            raise BadRequest('"token" must be a string')
        session_id = fields.get("session")
        if isinstance(session_id, str) and len(session_id) > MAX_SESSION_ID:
            # The welcome would echo it (`expired`): no id of ours is that long.
            raise BadRequest(f'"session" is over {MAX_SESSION_ID} characters')
        since = fields.get("inbox")
        inbox = _position(since)
        if since is not None and inbox is None:
            raise BadRequest('"inbox" must be {"epoch": string, "offset": integer}')
        admission, address = self.hub.admission, self.address
        try:
            if self.client is not None and not self.client.handshaken:
                admission.handshake(address)  # the TCP port: no door counted it
            session, identity = await self._resumed(session_id, fields.get("resume"), user, token)
            if session is None:
                admission.admit(address)  # before asking who it is: refused cheaply
                if identity is None:
                    identity = await self._connected(user, token)
                admission.admit(address)  # again: sessions may have opened meanwhile
                admission.admit_user(identity.user, address)
        except (RemoteError, Unavailable) as exc:  # refused, or no answer to ask
            self._error(None, exc)
            self.transport.close(exc.close_code, str(exc)[:120])
            return
        resumed = session is not None
        if session is None:
            assert identity is not None
            # This process must receive the user's direct messages before the session opens:
            # any sent after that reaches it (held until its welcome and recovery are out).
            await self.hub.direct_messages.prepare_user(identity.user)
            session = self._open_session(identity, resumable=True)
        elif identity is not None:
            self._renew(session, identity)  # resumed with a new token
        recovery = None
        unavailable: PushwireError | None = None
        if session.user is not None:
            # Where the user's direct messages stand, and what the client missed; those
            # that arrive meanwhile wait for the welcome.
            try:
                recovery = await self.hub.direct_messages.read(session, inbox)
            except PushwireError as exc:
                unavailable = exc  # welcomed all the same; recovered once the broker answers
            if session.transport is not self.transport or session.closed:
                return  # resumed on another connection meanwhile: this one was closed
        self.session = session
        if self.gone:
            # The connection ended while this hello awaited: nothing else detaches the session.
            self.detached(session)
            return
        self._log_open(session, resumed=resumed)
        self.client = None
        config = self.hub.config
        welcome: dict[str, Any] = {
            "type": "welcome",
            "session": session.id,
            "resume": session.secret,
            "user": session.user,
            "resumed": resumed,
            "heartbeat": _number(config.ping_interval),
            "transport": self.transport.name,
            "max_message": config.max_message,
        }
        if self.transport.name == "longpoll":
            # How long a poll is held: the client's deadline for one is this and a margin.
            welcome["longpoll_timeout"] = _number(config.longpoll_timeout)
        if session.token_expires is not None:
            welcome["expires"] = _number(session.token_expires)
        if session_id is not None and not resumed:
            welcome["expired"] = session_id  # the app must learn its old session is gone
        direct = self.hub.direct_messages
        if recovery is not None:
            start = direct.start(session, recovery)
            welcome["inbox"] = {"epoch": start.epoch, "offset": start.offset}
        self._reply(welcome)
        if recovery is not None:
            direct.replay(session, recovery)  # what the client missed, then live ones
        elif unavailable is not None:
            self._error(None, Unavailable(f"direct messages delayed: {unavailable}"))
            direct.recover_later(session, inbox)
        else:
            session.inbox_pending = None
        channel = self.endpoint.channel
        if self.endpoint.kind == "channel" and channel is not None:
            access = self.hub.access
            try:
                _, rule = access.check_subscribe(session, channel)
                await access.subscribe_hooks(session, channel)
            except (RemoteError, Unavailable) as exc:
                self._error(None, exc)
                self.transport.close(exc.close_code, str(exc)[:120])
                return
            self.hub.channels.subscribe(session, channel, present=rule.presence)

    async def _resumed(
        self, session_id: object, secret: object, user: str | None, token: str | None
    ) -> tuple[Session | None, Identity | None]:
        """The session a hello resumes, and who its token proves (None: it has none).

        Resuming needs the session's resume secret, at the endpoint that opened it: a hello
        without them is answered as one naming an unknown session (a new one, `expired`) and
        leaves the session it named alone. A token is checked again before the session is
        taken (`_recheck`).

        Raises:
            RemoteError: the resumption is refused (`_recheck`).
        """
        if not isinstance(session_id, str):
            return None, None
        lifecycle, where = self.hub.lifecycle, self.endpoint.key
        claimed = lifecycle.claim(session_id, secret, where)
        if claimed is not None:
            identity = await self._recheck(claimed, user, token)
            return lifecycle.resume(session_id, secret, where, self.transport), identity
        migration = self.hub.migration
        if migration is None:
            return None, None
        # Held by another node: it hands the session over (or it counts as expired).
        session = await migration.take_over(session_id, secret, where, self.transport)
        if session is None:
            return None, None
        try:
            return session, await self._recheck(session, user, token)
        except (RemoteError, Unavailable) as exc:
            # Taken over already: refused here, it waits detached as after a drop.
            lifecycle.detach(session, self.transport, exc.close_code, str(exc), final=False)
            raise

    async def _recheck(
        self, session: Session, user: str | None, token: str | None
    ) -> Identity | None:
        """Who the token of a hello resuming `session` proves: the connect decision again,
        for the session's user. Without a token the session keeps its token's expiry.

        Raises:
            TokenExpired: no token, and the session's has expired; or the token has.
            Unauthorized: an invalid token, or one for another user than the session's.
            Forbidden: the connect handler refused.
        """
        if self.endpoint.kind == "echo":
            return None  # no user, no token: nothing to prove
        if token is None:
            if self.hub.expiry.passed(session):
                exc = TokenExpired("token expired: resume with a new token")
                self._refused("resume", exc)
                raise exc
            return None
        identity = await self.hub.access.connect(self._connect_request(user, token))
        self._same_user(session, identity, "resume")
        return identity

    async def _connected(self, user: str | None, token: str | None) -> Identity:
        """Who a hello opening a new session is (the connect decision)."""
        if self.endpoint.kind == "echo":
            # An echo service: no user, no connect handler, so nothing to steal.
            return Identity(None)
        return await self.hub.access.connect(self._connect_request(user, token))

    async def _refresh(self, session: Session, fields: dict[str, Any], request_id: object) -> None:
        """A new token for the session: checked like at connect, for the same user; it moves
        the session's expiry and grants. Refused, the session keeps its old ones."""
        token = fields.get("token")
        try:
            if not isinstance(token, str):
                raise BadRequest('refresh needs a "token" string')
            request = ConnectRequest(
                path=self.endpoint.path,
                transport=self.transport.name,
                headers=[],
                query={},
                user=session.user,
                token=token,
            )
            identity = await self.hub.access.connect(request)
            self._same_user(session, identity, "refresh")
        except (RemoteError, Unavailable) as exc:
            self._failed(exc, request_id)
            return
        self._renew(session, identity)
        expires = session.token_expires
        shown = None if expires is None else _number(expires)
        self._reply({"type": "refreshed", "id": request_id, "expires": shown})

    def _same_user(self, session: Session, identity: Identity, decision: str) -> None:
        """Raises `Unauthorized` (logged) when a new token names another user."""
        if identity.user != session.user:
            exc = Unauthorized("the token is for another user than the session's")
            self._refused(decision, exc)
            raise exc

    def _refused(self, decision: str, exc: PushwireError) -> None:
        client = self.client
        where = f"{decision} ({self.transport.name} {self.endpoint.path})"
        self.hub.access.refusals.refused(where, exc, client.remote if client else None)

    async def _publish_hooked(
        self, session: Session, channel: str, data: Data, request_id: object, key: str | None
    ) -> None:
        try:
            await self.hub.access.publish_hooks(session, channel, data)
        except (RemoteError, Unavailable) as exc:
            self._failed(exc, request_id)
            return
        self.hub.publish_nowait(
            channel, data, self._answer_publish(request_id), idempotency_key=key
        )

    async def _send(self, session: Session, data: Data) -> None:
        kind = self.endpoint.kind
        if kind == "echo":
            session.reply(data)
        elif kind == "channel":
            channel = self.endpoint.channel
            assert channel is not None
            self.hub.access.check_publish(session, channel)
            await self.hub.access.publish_hooks(session, channel, data)
            await self.hub.publish(channel, data)
        else:
            await self.hub.handle_message(session, data)

    async def _subscribe(
        self, session: Session, fields: dict[str, Any], request_id: object
    ) -> None:
        access = self.hub.access
        presence = fields.get("presence") is True
        try:
            since = _position(fields.get("since"))
            rewind = _rewind(fields.get("rewind")) if since is None else 0
            channel, rule = access.check_subscribe(
                session, fields.get("channel"), fields.get("token")
            )
            if presence and not rule.presence:
                raise Forbidden(f"presence is off for {channel!r}")
            await access.subscribe_hooks(session, channel)
        except (RemoteError, Unavailable) as exc:
            self._failed(exc, request_id)
            return
        hub = self.hub
        # This process must receive the channel before its position is read: then every
        # message after that position reaches this subscriber, live or from history.
        await hub.channels.prepare(channel)
        with hub.channels.holding(channel):
            # Held: live messages wait while the position and history are read, and follow
            # them, so the client sees no gap and no reordering.
            hub.channels.subscribe(session, channel, present=rule.presence)
            stamp = hub.channels.continuity()
            try:
                if rewind:
                    # The last `rewind` messages: recovery from that many before the end.
                    end = await hub.channels.position(channel)
                    since = Position(end.epoch, max(0, end.offset - rewind))
                history = await hub.broker.history(channel, since) if since is not None else None
                position = (
                    history.position
                    if history is not None
                    else await hub.channels.position(channel)
                )
            except PushwireError as exc:
                hub.channels.unsubscribe(session, channel)
                self._failed(exc, request_id)
                return
            hub.channels.note(channel, position, stamp)
            self._reply(
                {
                    "type": "subscribed",
                    "id": request_id,
                    "channel": channel,
                    "epoch": position.epoch,
                    "offset": position.offset,
                }
            )
            if since is not None and history is not None:
                ended = hub.channels.ended(channel, since.epoch, position.epoch, stamp)
                write_recovery(self.transport, channel, since, history, ended)
        if presence:
            try:
                await hub.watch_presence(session, channel)
            except PushwireError as exc:
                self._failed(exc, request_id)

    async def _presence(self, session: Session, fields: dict[str, Any], request_id: object) -> None:
        try:
            channel = self.hub.access.check_channel(fields.get("channel"))
            if channel not in session.channels:
                raise BadRequest(f"not subscribed to {channel!r}: subscribe to see who is there")
            if not self.hub.access.namespaces.rule(channel).presence:
                raise Forbidden(f"presence is off for {channel!r}")
            snapshot = await self.hub.presence(channel)
        except PushwireError as exc:
            self._failed(exc, request_id)
            return
        answer = snapshot_fields(snapshot)
        if request_id is not None:
            answer["id"] = request_id
        self._reply(answer)

    def _answer_publish(self, request_id: object) -> Any:
        def done(result: Message | PushwireError) -> None:
            if isinstance(result, PushwireError):
                self._error(request_id, result)
            elif request_id is not None:
                self._reply(
                    {
                        "type": "published",
                        "id": request_id,
                        "channel": result.channel,
                        "epoch": result.epoch,
                        "offset": result.offset,
                    }
                )

        return done

    def _reply(self, fields: dict[str, Any]) -> None:
        if fields.get("id", 0) is None:
            del fields["id"]
        self.transport.write(self.transport.framing.frame_control(fields))

    def _error(self, request_id: object, exc: Exception) -> None:
        if isinstance(exc, PushwireError):
            code = exc.error_code
            shown = isinstance(exc, RemoteError | Unavailable)
            message = str(exc) if shown else "internal error"
        else:
            code, message = "internal", "internal error"
        fields: dict[str, Any] = {"type": "error", "code": code, "message": message}
        wait = backoff_seconds(exc)
        if wait is not None:
            fields["retry_after"] = wait
        if request_id is not None:
            fields["id"] = request_id
        self.transport.write(self.transport.framing.frame_control(fields))

    def _failed(self, exc: Exception, request_id: object) -> None:
        self._error(request_id, exc)


def _number(value: float) -> float | int:
    """20.0 as 20 on the wire: whole seconds read as whole numbers."""
    return int(value) if value.is_integer() else value


def _rewind(value: object) -> int:
    """A subscription's `rewind`: how many of the channel's last messages to send first.

    Raises:
        BadRequest: not a whole number from 0 to 2^63 - 1.
    """
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    raise BadRequest(f"rewind must be a whole number from 0 to {MAX_POSITION}, not {value!r:.40}")


def _position(value: object) -> Position | None:
    """A subscription's `since`: None when absent or not an `{epoch, offset}` object.

    Raises:
        BadRequest: an offset out of 0 to 2^63 - 1, or an epoch over `MAX_EPOCH` characters.
    """
    if not isinstance(value, dict):
        return None
    epoch, offset = value.get("epoch"), value.get("offset")
    if isinstance(epoch, str) and isinstance(offset, int) and not isinstance(offset, bool):
        if not 0 <= offset <= MAX_POSITION or len(epoch) > MAX_EPOCH:
            raise BadRequest(
                f"since {{epoch: {quoted(epoch)}, offset: {offset}}} is out of range: an epoch "
                f"of at most {MAX_EPOCH} characters, an offset from 0 to {MAX_POSITION}"
            )
        return Position(epoch, offset)
    return None
