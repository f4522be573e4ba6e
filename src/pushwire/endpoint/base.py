"""What a client's messages mean at an endpoint: what raw mode and pushwire.v1 share.

Transport-blind: a handler (the transport's `Receiver`) takes application frames (`Data`)
from whatever transport carries the client, asks the hub, and answers through the session's
transport. The transports only move bytes; every transport of pushwire shares these handlers:
`RawHandler` (raw.py) and `EnvelopeHandler` (v1.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ..broker.base import History, PublishCallback
from ..core import ConnectRequest, Hub, Identity, Session
from ..core.connecting import new_request, slot_setters
from ..core.transport import Transport
from ..errors import (
    BadRequest,
    PushwireError,
    RateLimited,
)
from ..guard import FAILURES
from ..logs import connection_event, connection_log
from ..message import Data, Position
from ..ratelimit import MessageRate

__all__ = [
    "ClientInfo",
    "Endpoint",
    "Handler",
    "raw_connect_request",
    "token_of",
    "write_recovery",
]


#: Messages a handler queues while one of its steps awaits (an app handler, the broker).
MAX_PENDING: Final = 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A path's meaning: `echo` sends back, `channel` publishes to `channel`, `general`
    hands messages to the app. `any_origin` lets every browser origin in (the echo service)."""

    kind: Literal["echo", "channel", "general"]
    channel: str | None = None
    any_origin: bool = False
    #: Names the endpoint in its sessions: a session is resumed, polled and sent to only
    #: at the endpoint that opened it (an /echo session is no /pushwire session). Interned:
    #: the sessions of one endpoint share one string. (Made once: an endpoint is shared by
    #: its connections, and read at each one's opening.)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        channel = self.channel
        key = self.kind if channel is None else sys.intern(f"{self.kind}:{channel}")
        object.__setattr__(self, "key", key)

    @property
    def path(self) -> str:
        """The endpoint's path, as the built-in app routes it."""
        if self.kind == "channel":
            return f"/ws/{self.channel}"
        return "/echo" if self.kind == "echo" else "/pushwire"


@dataclass(frozen=True, slots=True, init=False)
class ClientInfo:
    """What the connection layer knows of the client when it connects (made once per
    connection: its slots are written as `ConnectRequest`'s are, `slot_setters`)."""

    path: str
    headers: list[tuple[str, str]]
    query: Mapping[str, str]
    remote: str | None
    #: The client's IP address (behind a trusted proxy, the one it forwarded), for the
    #: per-address limits.
    address: str | None = None
    #: The door counted the handshake already (`Admission.handshake`): the HTTP doors do;
    #: the TCP port, which has none, leaves it to the hello.
    handshaken: bool = False

    def __init__(
        self,
        path: str,
        headers: list[tuple[str, str]],
        query: Mapping[str, str],
        remote: str | None,
        address: str | None = None,
        handshaken: bool = False,
    ) -> None:
        _client_path(self, path)
        _client_headers(self, headers)
        _client_query(self, query)
        _client_remote(self, remote)
        _client_address(self, address)
        _client_handshaken(self, handshaken)


(
    _client_path,
    _client_headers,
    _client_query,
    _client_remote,
    _client_address,
    _client_handshaken,
) = slot_setters(ClientInfo, "path", "headers", "query", "remote", "address", "handshaken")


def token_of(client: ClientInfo) -> str | None:
    """A raw client's credential: `Authorization: Bearer <token>`, a `pushwire_token` cookie,
    or (where a browser leaves no other way: EventSource, a plain WebSocket) `?token=`."""
    for name, value in client.headers:
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == "cookie":
            for part in value.split(";"):
                key, _, token = part.strip().partition("=")
                if key == "pushwire_token" and token:
                    return token
    return client.query.get("token") or None


def raw_connect_request(client: ClientInfo, transport: str) -> ConnectRequest:
    """What a raw client's door knows of it: its token (`token_of`), and the user it claims
    (`?user=`, taken only by an open server)."""
    query = client.query
    return new_request(
        client.path,
        transport,
        client.headers,
        query,
        query.get("user"),
        token_of(client),
        client.remote,
    )


class Handler:
    """Runs a client's messages one after another, even when a step has to await."""

    __slots__ = (
        "_pending",
        "_rate",
        "_task",
        "address",
        "client",
        "endpoint",
        "gone",
        "hub",
        "opened_at",
        "remote",
        "session",
        "transport",
    )

    def __init__(self, hub: Hub, endpoint: Endpoint, transport: Transport, client: ClientInfo):
        self.hub = hub
        self.endpoint = endpoint
        self.transport = transport
        self.address = client.address
        #: The session's message and byte rates, made at the first message (an idle
        #: subscriber never sends one; the buckets start full either way); False when they
        #: do not apply (unbounded, or an exempt address).
        self._rate: MessageRate | Literal[False] | None = None
        # Dropped once the session is open: the request's headers are not kept for a
        # connection's whole life.
        self.client: ClientInfo | None = client
        self.remote = client.remote
        self.session: Session | None = None
        #: When the session began on this connection (hub clock), for the lifecycle log;
        #: None while that log is off (a float is 24 bytes a connection).
        self.opened_at: float | None = None
        self._pending: deque[Data] | None = None
        self._task: asyncio.Future[None] | None = None
        #: The connection ended (`closed` was called): a session opened after that, by a step
        #: that was awaiting, is detached at once (else it stayed attached to nothing).
        self.gone = False

    def open(self) -> Awaitable[None] | None:
        """The connection is open; an awaitable when opening must wait (connect handler)."""
        return None

    def receive(self, data: Data) -> None:
        """An application frame arrived from the client."""
        rate = self._rate
        if rate is None:
            rate = self._rate = self._make_rate()
        if isinstance(rate, MessageRate) and not rate.allow(len(data)):
            self._over_rate(rate)
            return
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

    def _make_rate(self) -> MessageRate | Literal[False]:
        """The session's rates, or False when they do not apply."""
        hub = self.hub
        config = hub.config
        if config.messages_per_second <= 0 and config.bytes_per_second <= 0:
            return False
        if hub.admission.exempt(self.address):
            return False
        return MessageRate(hub.admission.rates())

    def _over_rate(self, rate: MessageRate) -> None:
        """A message over the session's rates was dropped: the client is told (`_failed`:
        an `error`, or a close where there is no envelope); closed 4029 when it keeps on."""
        exc = RateLimited(rate.refusal(), retry_after=rate.wait())
        if rate.strikes > self.hub.config.rate_limit_strikes:
            self.transport.close(exc.close_code, str(exc)[:120])
            return
        self._failed(exc, None)

    async def _run_steps(self, step: Awaitable[None]) -> None:
        try:
            await self._guard(step)
            while self._pending:
                data = self._pending.popleft()
                try:
                    next_step = self._step(data)
                except Exception as exc:  # as `_guard` does, or it ends the task unseen
                    self._step_failed(exc)
                    continue
                if next_step is not None:
                    await self._guard(next_step)
        finally:
            self._pending = None
            self._task = None  # kept while running (the loop holds tasks weakly), not after

    async def _guard(self, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:
            self._step_failed(exc)

    def _step_failed(self, exc: Exception) -> None:
        """A step failed: the client is told (`_failed`); what was not planned is logged."""
        if not isinstance(exc, PushwireError):
            FAILURES.failed(f"{self.transport.name} handler", exc, None)
        self._failed(exc, None)

    def _step(self, data: Data) -> Awaitable[None] | None:
        raise NotImplementedError

    def _failed(self, exc: Exception, request_id: object) -> None:
        raise NotImplementedError

    def closed(self, code: int, reason: str, *, by_client: bool) -> None:
        """The connection ended; `by_client`: the client closed it on purpose (a Close frame
        it sent first, a closing request), which ends its session."""
        self.gone = True
        session = self.session
        if session is not None:
            closes = self.hub.stats.closes
            closes[code] = closes.get(code, 0) + 1
            if self.opened_at is not None and connection_log.isEnabledFor(logging.INFO):
                connection_event(
                    "close",
                    transport=self.transport.name,
                    peer=self.remote,
                    user=session.user,
                    session=session.public_id,
                    code=code,
                    reason=reason,
                    duration=self.hub.clock.time() - self.opened_at,
                )
            self.hub.lifecycle.detach(session, self.transport, code, reason, final=by_client)

    def _log_open(self, session: Session, *, resumed: bool = False) -> None:
        """The connection carries `session` now: one lifecycle line (pushwire.logs)."""
        if connection_log.isEnabledFor(logging.INFO):
            self.opened_at = self.hub.clock.time()
            connection_event(
                "resume" if resumed else "open",
                transport=self.transport.name,
                peer=self.remote,
                user=session.user,
                session=session.public_id,
            )

    def _open_session(self, identity: Identity, *, resumable: bool) -> Session:
        session = self.hub.lifecycle.open(
            self.transport,
            identity.user,
            identity.info,
            resumable=resumable,
            endpoint=self.endpoint.key,
            address=self.address,
        )
        if identity.forwarded:  # (else the session's shared empty mapping)
            session.forwarded = identity.forwarded
        self._renew(session, identity)
        if self.gone:
            self.detached(session)
        return session

    def detached(self, session: Session) -> None:
        """`session` was attached to this handler's connection after it ended: detach it as
        the end of the connection would have (found by tests/fuzz: sessions left behind)."""
        self.hub.lifecycle.detach(session, self.transport, 1006, "connection lost", final=False)

    def _renew(self, session: Session, identity: Identity) -> None:
        """What a (new) token says for the session: its grants, and its expiry from now on."""
        session.grants = identity.grants
        self.hub.expiry.watch(session, identity.expires)

    async def _publish_checked(
        self, session: Session, channel: str, data: Data, done: PublishCallback
    ) -> None:
        """Publish what a client sent, once the app's `on_publish` handler let it."""
        await self.hub.access.publish_hooks(session, channel, data)
        self.hub.publish_nowait(channel, data, done)

    def _connect_request(self, user: str | None, token: str | None) -> ConnectRequest:
        client = self.client
        if client is None:
            raise BadRequest("the session is already open")
        self.client = None
        return new_request(
            client.path,
            self.transport.name,
            client.headers,
            client.query,
            user,
            token,
            client.remote,
        )


def write_recovery(
    transport: Transport,
    channel: str,
    since: Position,
    history: History,
    ended: Position | None = None,
) -> None:
    """What a client missed since `since`: a `gap` first when messages are lost
    (`History.lost`; `ended`: where this process saw `since`'s epoch end, if it did), then
    the messages history still holds, in order."""
    framing = transport.framing
    last_lost = history.lost(since, ended)
    if last_lost is not None:
        gap = {
            "type": "gap",
            "channel": channel,
            "from": {"epoch": since.epoch, "offset": since.offset},
            "to": {"epoch": last_lost.epoch, "offset": last_lost.offset},
        }
        transport.write(framing.frame_control(gap))
    for message in history.messages:
        transport.write(framing.frame_message(message))
