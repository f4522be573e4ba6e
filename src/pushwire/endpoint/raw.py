"""Raw mode: no envelope, a frame is a message (`/ws/<channel>`, `/sse/<channel>`, `/echo`)."""

from __future__ import annotations

from collections.abc import Awaitable
from logging import INFO

from ..auth.namespaces import Namespace
from ..core import ConnectRequest, Hub, Identity
from ..core.transport import Transport
from ..errors import (
    PushwireError,
    RemoteError,
    Unavailable,
)
from ..guard import FAILURES
from ..logs import connection_log
from ..message import Data, Message, Position
from .base import ClientInfo, Endpoint, Handler, raw_connect_request, write_recovery

__all__ = ["RawHandler"]


class RawHandler(Handler):
    """Raw mode: no envelope; the session opens with the connection.

    Who the client is comes from its token (`token_of`), or in an open server from the
    `user` query parameter; on a channel endpoint it must be let in to read the channel, and
    each frame it sends is a publish it must be allowed (asked at its first frame).
    `since` (a raw SSE client's Last-Event-ID) replays the channel's history after it.
    """

    __slots__ = ("identity", "may_publish", "since")

    def __init__(
        self,
        hub: Hub,
        endpoint: Endpoint,
        transport: Transport,
        client: ClientInfo,
        *,
        identity: Identity | None = None,
    ) -> None:
        Handler.__init__(self, hub, endpoint, transport, client)  # (no super object made)
        self.since: Position | None = None
        self.may_publish: bool | None = None  # not asked yet
        #: Who the client is when its door checked it already (raw SSE, before its stream).
        self.identity = identity

    def open(self) -> Awaitable[None] | None:
        """Open the session; an awaitable when connecting or history must be awaited.
        The echo service opens none: it only sends back what it receives."""
        client = self.client
        assert client is not None
        self.client = None
        if self.endpoint.kind == "echo":
            return None
        admission = self.hub.admission
        try:
            if not client.handshaken:
                admission.handshake(self.address)
            admission.admit(self.address)
        except PushwireError as exc:
            self._failed(exc, None)
            return None
        request = raw_connect_request(client, self.transport.name)
        access = self.hub.access
        if (self.identity is None and access.subscribe_hooked) or self.since is not None:
            return self._open_awaiting(request)
        try:
            # Inline unless the connect proxy or the connect handler must be awaited: a task
            # and a paused read per connection were about a tenth of a handshake (py-spy).
            identity = self.identity or access.connect_started(request)
            if not isinstance(identity, Identity):
                return self._open_awaiting(request, identity)
            self._join(self._begin(identity))
        except PushwireError as exc:
            self._failed(exc, None)
        except Exception as exc:  # as `await_opening` does for an awaited opening
            FAILURES.failed("opening", exc, None)
            self.transport.close(1011, "internal error")
        return None

    async def _open_awaiting(
        self, request: ConnectRequest, connecting: Awaitable[Identity] | None = None
    ) -> None:
        access = self.hub.access
        identity = self.identity or await (connecting or access.connect(request))
        rule = self._begin(identity)
        channel, since = self.endpoint.channel, self.since
        if rule is not None and channel is not None and self.session is not None:
            await access.subscribe_hooks(self.session, channel)
        history = None
        stamp = self.hub.channels.continuity()
        if channel is not None and since is not None:
            history = await self.hub.broker.history(channel, since)
        # No await from here on: replayed messages go out before live ones.
        self._join(rule)
        if history is not None and channel is not None and since is not None:
            ended = self.hub.channels.ended(channel, since.epoch, history.position.epoch, stamp)
            write_recovery(self.transport, channel, since, history, ended)

    def _begin(self, identity: Identity) -> Namespace | None:
        """Open the session; on a channel endpoint, the channel's rule once the session may
        read it (`check_subscribe` raises otherwise)."""
        self.hub.admission.admit_user(identity.user, self.address)
        session = self.session = self._open_session(identity, resumable=False)
        # (not when `_open_session` detached it at once; no call while the log is off)
        if not self.gone and connection_log.isEnabledFor(INFO):
            self._log_open(session)
        channel = self.endpoint.channel
        if self.endpoint.kind != "channel" or channel is None:
            return None
        return self.hub.access.check_subscribe(session, channel)[1]

    def _join(self, rule: Namespace | None) -> None:
        channel, session = self.endpoint.channel, self.session
        if rule is not None and channel is not None and session is not None:
            self.hub.channels.subscribe(session, channel, present=rule.presence)

    def _step(self, data: Data) -> Awaitable[None] | None:
        kind = self.endpoint.kind
        if kind == "echo":
            transport = self.transport
            transport.write(transport.framing.frame_direct(data))
            return None
        session = self.session
        if session is None:
            return None
        if kind == "channel":
            channel = self.endpoint.channel
            assert channel is not None
            access = self.hub.access
            if self.may_publish is None:
                try:
                    access.check_publish(session, channel)
                except PushwireError as exc:
                    self._failed(exc, None)
                    return None
                self.may_publish = True
            if access.publish_hooked:
                return self._publish_checked(session, channel, data, self._published)
            self.hub.publish_nowait(channel, data, self._published)
        else:
            return self.hub.handle_message(session, data)
        return None

    def _published(self, result: Message | PushwireError) -> None:
        if isinstance(result, PushwireError):
            # Raw mode has no error frame: the client learns it through the close code.
            self.transport.close(result.close_code, str(result)[:120])

    def _failed(self, exc: Exception, request_id: object) -> None:
        code = exc.close_code if isinstance(exc, PushwireError) else 1011
        # A refusal and "unavailable" (the broker, the app's backend) say what happened.
        reason = str(exc) if isinstance(exc, RemoteError | Unavailable) else "internal error"
        self.transport.close(code, reason[:120])
