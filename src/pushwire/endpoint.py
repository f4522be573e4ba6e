"""What a client's messages mean at an endpoint, in raw mode and in pushwire.v1.

Transport-blind: a handler receives application frames (`Data`) from whatever transport
carries the client, talks to the hub, and answers through the session's transport. The
transports only move bytes; every transport of pushwire shares these handlers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .broker.base import History
from .core import ConnectRequest, Hub, Identity, Session, snapshot_fields
from .core.transport import Transport
from .envelope import Envelope, decode
from .errors import (
    BadRequest,
    Forbidden,
    PushwireError,
    RemoteError,
    Unavailable,
    UnknownType,
)
from .message import Data, Message, Position

__all__ = ["Endpoint", "EnvelopeHandler", "RawHandler"]

log = logging.getLogger("pushwire.endpoint")

#: Messages a handler queues while one of its steps awaits (an app handler, the broker).
MAX_PENDING: Final = 1024
#: What a pushwire.v1 session on /echo may not do: it echoes, and reaches nothing else.
ECHO_REFUSED: Final = frozenset({"subscribe", "publish", "presence"})
ECHO_ONLY: Final = "/echo is an echo service"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A path's meaning: `echo` sends back, `channel` publishes to `channel`, `general`
    hands messages to the app. `any_origin` lets every browser origin in (the echo service)."""

    kind: Literal["echo", "channel", "general"]
    channel: str | None = None
    any_origin: bool = False

    @property
    def key(self) -> str:
        """Names the endpoint in its sessions: a session is resumed, polled and sent to only
        at the endpoint that opened it (an /echo session is no /pushwire session)."""
        return self.kind if self.channel is None else f"{self.kind}:{self.channel}"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the connection layer knows of the client when it connects."""

    path: str
    headers: list[tuple[str, str]]
    query: Mapping[str, str]
    remote: str | None


class _Handler:
    """Runs a client's messages one after another, even when a step has to await."""

    __slots__ = ("_pending", "_task", "client", "endpoint", "hub", "session", "transport")

    def __init__(self, hub: Hub, endpoint: Endpoint, transport: Transport, client: ClientInfo):
        self.hub = hub
        self.endpoint = endpoint
        self.transport = transport
        # Dropped once the session is open: the request's headers are not kept for a
        # connection's whole life.
        self.client: ClientInfo | None = client
        self.session: Session | None = None
        self._pending: deque[Data] | None = None
        self._task: asyncio.Future[None] | None = None

    def open(self) -> Awaitable[None] | None:
        """The connection is open; an awaitable when opening must wait (connect handler)."""
        return None

    def receive(self, data: Data) -> None:
        """An application frame arrived from the client."""
        if self._pending is not None:
            if len(self._pending) >= MAX_PENDING:
                self.transport.close(4100, f"too many messages in flight (> {MAX_PENDING})")
                return
            self._pending.append(data)
            return
        step = self._step(data)
        if step is not None:
            self._pending = deque()
            self._task = asyncio.ensure_future(self._run_steps(step))

    async def _run_steps(self, step: Awaitable[None]) -> None:
        try:
            await self._guard(step)
            while self._pending:
                data = self._pending.popleft()
                next_step = self._step(data)
                if next_step is not None:
                    await self._guard(next_step)
        finally:
            self._pending = None
            self._task = None  # kept while running (the loop holds tasks weakly), not after

    async def _guard(self, step: Awaitable[None]) -> None:
        try:
            await step
        except PushwireError as exc:
            self._failed(exc, None)
        except Exception as exc:
            log.exception("handler failed")
            self._failed(exc, None)

    def _step(self, data: Data) -> Awaitable[None] | None:
        raise NotImplementedError

    def _failed(self, exc: Exception, request_id: object) -> None:
        raise NotImplementedError

    def closed(self, code: int, reason: str, *, by_client: bool) -> None:
        """The connection ended; `by_client`: the client closed it on purpose (a Close frame
        it sent first, a closing request), which ends its session."""
        if self.session is not None:
            self.hub.lifecycle.detach(self.session, self.transport, code, reason, final=by_client)

    def _connect_request(self, user: str | None, token: str | None) -> ConnectRequest:
        client = self.client
        if client is None:
            raise BadRequest("the session is already open")
        self.client = None
        return ConnectRequest(
            path=client.path,
            transport=self.transport.name,
            headers=client.headers,
            query=client.query,
            user=user,
            token=token,
            remote=client.remote,
        )


class RawHandler(_Handler):
    """Raw mode: no envelope; the session opens with the connection.

    The user id comes from the `user` query parameter, as the connect handler allows.
    `since` (a raw SSE client's Last-Event-ID) replays the channel's history after it.
    """

    __slots__ = ("since",)

    def __init__(self, hub: Hub, endpoint: Endpoint, transport: Transport, client: ClientInfo):
        super().__init__(hub, endpoint, transport, client)
        self.since: Position | None = None

    def open(self) -> Awaitable[None] | None:
        """Open the session; an awaitable when the connect handler or history must be awaited.
        The echo service opens none: it only sends back what it receives."""
        if self.endpoint.kind == "echo":
            self.client = None
            return None
        user = self.client.query.get("user") if self.client is not None else None
        request = self._connect_request(user, None)
        if self.hub.has_connect_handler or self.since is not None:
            return self._open_awaiting(request)
        self._opened(Identity(request.user))
        return None

    async def _open_awaiting(self, request: ConnectRequest) -> None:
        identity = await self.hub.access.identify(request)
        channel, since = self.endpoint.channel, self.since
        history = None
        if channel is not None and since is not None:
            history = await self.hub.broker.history(channel, since)
        # No await from here on: replayed messages go out before live ones.
        self._opened(identity)
        if history is not None and channel is not None and since is not None:
            write_recovery(self.transport, channel, since, history)

    def _opened(self, identity: Identity) -> None:
        self.session = self.hub.lifecycle.open(self.transport, identity.user, identity.info)
        if self.endpoint.kind == "channel" and self.endpoint.channel is not None:
            self.hub.channels.subscribe(self.session, self.endpoint.channel)

    def _step(self, data: Data) -> Awaitable[None] | None:
        kind = self.endpoint.kind
        if kind == "echo":
            transport = self.transport
            transport.write(transport.framing.frame_direct(0, data))
            return None
        session = self.session
        if session is None:
            return None
        if kind == "channel":
            assert self.endpoint.channel is not None
            self.hub.publish_nowait(self.endpoint.channel, data, self._published)
        else:
            return self.hub.handle_message(session, data)
        return None

    def _published(self, result: Message | PushwireError) -> None:
        if isinstance(result, PushwireError):
            # Raw mode has no error frame: the client learns it through the close code.
            self.transport.close(result.close_code, str(result)[:120])

    def _failed(self, exc: Exception, request_id: object) -> None:
        code = exc.close_code if isinstance(exc, PushwireError) else 1011
        reason = str(exc) if isinstance(exc, RemoteError) else "internal error"
        self.transport.close(code, reason[:120])


class EnvelopeHandler(_Handler):
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
        try:
            if self.session is None:
                if envelope.type != "hello":
                    raise BadRequest(f"expected hello first, got {envelope.type!r}")
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
            channel = self.hub.access.check_channel(fields.get("channel"))
            if envelope.data is None:
                raise BadRequest("publish without data")
            self.hub.publish_nowait(channel, envelope.data, self._answer_publish(request_id))
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
        elif kind == "ping":
            self._reply({"type": "pong"})
        elif kind == "pong":
            pass  # the answer to a server heartbeat (TCP); receiving it is all that matters
        elif kind == "close":
            # The client ends its session on purpose (transports without a close handshake).
            self.hub.close_session(session, 1000, "closed by the client")
            self.transport.close(1000, "closed by the client")
        elif kind == "ack":
            seq = fields.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise BadRequest('ack needs an integer "seq"')
            session.ack(seq)
        elif kind == "hello":
            raise BadRequest("hello was already received")
        else:
            raise UnknownType(f"unknown envelope type {kind!r}")
        return None

    async def _hello(self, envelope: Envelope) -> None:
        fields = envelope.fields
        user, token = fields.get("user"), fields.get("token")
        if user is not None and not isinstance(user, str):
            raise BadRequest('"user" must be a string')
        if token is not None and not isinstance(token, str):
            raise BadRequest('"token" must be a string')
        session_id, ack = fields.get("session"), fields.get("ack", 0)
        if not isinstance(ack, int) or isinstance(ack, bool):
            raise BadRequest('"ack" must be an integer')
        # Resuming needs the session's resume secret, at the endpoint that opened it: a hello
        # without them is answered as one naming an unknown session (a new one, `expired`)
        # and leaves the session it named alone.
        secret, where = fields.get("resume"), self.endpoint.key
        session = (
            self.hub.lifecycle.resume(session_id, secret, where, self.transport)
            if isinstance(session_id, str)
            else None
        )
        migration = self.hub.migration
        if session is None and isinstance(session_id, str) and migration is not None:
            # Held by another node: it hands the session over (or it counts as expired).
            session = await migration.take_over(session_id, secret, where, self.transport)
        resumed = session is not None
        if session is None:
            if self.endpoint.kind == "echo":
                # An echo service: no user, no connect handler, so nothing to steal.
                identity = Identity(None)
            else:
                try:
                    identity = await self.hub.access.identify(self._connect_request(user, token))
                except RemoteError as exc:
                    self._error(None, exc)
                    self.transport.close(exc.close_code, str(exc)[:120])
                    return
            # This process must receive the user's direct messages before the welcome: any
            # sent after it reaches the session. No await from here to the welcome.
            await self.hub.direct_messages.prepare_user(identity.user)
            session = self.hub.lifecycle.open(
                self.transport, identity.user, identity.info, resumable=True, endpoint=where
            )
        self.session = session
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
        if session_id is not None and not resumed:
            welcome["expired"] = session_id  # the app must learn its old session is gone
        self._reply(welcome)
        if resumed:
            session.ack(ack)
            session.resend_unacked()
        if self.endpoint.kind == "channel" and self.endpoint.channel is not None:
            self.hub.channels.subscribe(session, self.endpoint.channel)

    async def _send(self, session: Session, data: Data) -> None:
        kind = self.endpoint.kind
        if kind == "echo":
            self.hub.direct_messages.send_to_session(session, data)
        elif kind == "channel":
            assert self.endpoint.channel is not None
            await self.hub.publish(self.endpoint.channel, data)
        else:
            await self.hub.handle_message(session, data)

    async def _subscribe(
        self, session: Session, fields: dict[str, Any], request_id: object
    ) -> None:
        channel = fields.get("channel")
        try:
            await self.hub.access.authorize_subscribe(session, channel)  # type: ignore[arg-type]
        except RemoteError as exc:
            self._failed(exc, request_id)
            return
        assert isinstance(channel, str)
        since = _position(fields.get("since"))
        hub = self.hub
        # This process must receive the channel before its position is read: then every
        # message after that position reaches this subscriber, live or from history.
        await hub.channels.prepare(channel)
        with hub.channels.holding(channel):
            # Held: live messages wait while the position and history are read, and follow
            # them, so the client sees no gap and no reordering.
            hub.channels.subscribe(session, channel)
            try:
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
                write_recovery(self.transport, channel, since, history)
        if fields.get("presence") is True:
            try:
                await hub.watch_presence(session, channel)
            except PushwireError as exc:
                self._failed(exc, request_id)

    async def _presence(self, session: Session, fields: dict[str, Any], request_id: object) -> None:
        try:
            channel = self.hub.access.check_channel(fields.get("channel"))
            if channel not in session.channels:
                raise BadRequest(f"not subscribed to {channel!r}: subscribe to see who is there")
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
        if request_id is not None:
            fields["id"] = request_id
        self.transport.write(self.transport.framing.frame_control(fields))

    def _failed(self, exc: Exception, request_id: object) -> None:
        self._error(request_id, exc)


def write_recovery(transport: Transport, channel: str, since: Position, history: History) -> None:
    """What a client missed since `since`: a `gap` first when history does not reach back,
    then the messages history still holds, in order."""
    framing = transport.framing
    if not history.complete:
        first = history.messages[0].offset if history.messages else history.position.offset + 1
        gap = {
            "type": "gap",
            "channel": channel,
            "from": {"epoch": since.epoch, "offset": since.offset},
            "to": {"epoch": history.position.epoch, "offset": first - 1},
        }
        transport.write(framing.frame_control(gap))
    for message in history.messages:
        transport.write(framing.frame_message(message))


def _number(value: float) -> float | int:
    """20.0 as 20 on the wire: whole seconds read as whole numbers."""
    return int(value) if value.is_integer() else value


def _position(value: object) -> Position | None:
    if not isinstance(value, dict):
        return None
    epoch, offset = value.get("epoch"), value.get("offset")
    if isinstance(epoch, str) and isinstance(offset, int):
        return Position(epoch, offset)
    return None
