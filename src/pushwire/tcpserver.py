"""The raw TCP port: the asyncio adapter around the sans-I/O `tcp` transport.

One `TcpConnection` per client. It feeds bytes to `TcpParser`, hands envelopes to the
transport-blind `EnvelopeHandler`, sends heartbeats (`{"type":"ping"}`) and drops a peer that
stays silent for `ping_timeout` after one, and bounds a frame's arrival by `header_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from .endpoint import ClientInfo, Endpoint, EnvelopeHandler
from .envelope import encode_text
from .errors import IncompleteFrame, RemoteError
from .http.server import OneTimer
from .transports.base import Framing
from .transports.tcp import TCP_FRAMING, PolicyRequest, TcpParser, policy_file

if TYPE_CHECKING:
    from .http.server import Server

__all__ = ["TcpConnection"]

log = logging.getLogger("pushwire.tcp")

#: Room for the envelope around a message of `max_message` bytes.
ENVELOPE_ALLOWANCE = 64 * 1024


class TcpConnection(OneTimer, asyncio.Protocol):
    """A native client on the TCP port; the hub's `Transport` for its session."""

    name = "tcp"

    def __init__(self, server: Server, port: int) -> None:
        self.server = server
        self.config = server.config
        self.port = port
        self.framing: Framing = TCP_FRAMING
        self.parser = TcpParser(self.config.max_message + ENVELOPE_ALLOWANCE)
        self.transport: asyncio.Transport | None = None
        self.handler: EnvelopeHandler | None = None
        self._init_timer()
        self.awaiting_reply = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        self.server.accepted += 1
        if len(self.server.connections) > self.config.max_connections:
            self.close(4000, f"too many connections (> {self.config.max_connections})")
            return
        self.transport.set_write_buffer_limits(high=self.config.max_write_buffer)
        peer = self.transport.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
        client = ClientInfo("tcp", [], {}, remote)
        self.handler = EnvelopeHandler(self.server.app.hub, Endpoint("general"), self, client)
        self._heartbeat_later()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.awaiting_reply = False
        try:
            self.parser.receive_data(data)
        except RemoteError as exc:
            self._refuse(exc)
            return
        for event in self.parser.events_received():
            if isinstance(event, PolicyRequest):
                allowed = self.server.app.policy.allowed
                self._write_raw(policy_file(allowed, self.port))
                self._end()
                return
            if self.handler is not None:
                self.handler.receive(event.data)
        if self.parser.incomplete:
            self._set_timer(self.config.header_timeout, self._frame_timeout)
        else:
            self._heartbeat_later()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self.server.connections.discard(self)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.closed(1006, "connection lost", by_client=False)
        self.server.connection_closed()

    def pause_writing(self) -> None:
        asyncio.get_running_loop().call_soon(
            self.close, 4001, f"slow consumer (> {self.config.max_write_buffer} bytes queued)"
        )

    # -- Transport contract -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and data and self.transport is not None:
            self.transport.write(data)

    def close(self, code: int, reason: str) -> None:
        """Send a `close` envelope, then close the socket; the session stays resumable."""
        if self.closed:
            return
        self.write(TCP_FRAMING.frame_control({"type": "close", "code": code, "reason": reason}))
        self._end()
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.closed(code, reason, by_client=False)

    # -- internals ----------------------------------------------------------------------------

    def _write_raw(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _end(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, exc: RemoteError) -> None:
        error = {"type": "error", "code": exc.error_code, "message": str(exc)}
        self._write_raw(TCP_FRAMING.wrap(encode_text(error)))
        self.close(exc.close_code, str(exc)[:120])

    def _frame_timeout(self) -> None:
        timeout = self.config.header_timeout
        got = self.parser.incomplete
        message = f"incomplete frame: {got} bytes, then nothing for {timeout} s"
        self._refuse(IncompleteFrame(message))

    def _heartbeat_later(self) -> None:
        self._set_timer(self.config.heartbeat_interval, self._heartbeat)

    def _heartbeat(self) -> None:
        if self.closed:
            return
        if self.awaiting_reply:
            log.debug("tcp peer silent after a ping, dropping it")
            if self.transport is not None:
                self.transport.abort()
            return
        self.awaiting_reply = True
        self.write(TCP_FRAMING.frame_control({"type": "ping"}))
        self._set_timer(self.config.ping_timeout, self._heartbeat)

    # -- shutdown (called by Server) ------------------------------------------------------------

    def shutdown(self) -> None:
        self.close(1001, "server shutting down")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
