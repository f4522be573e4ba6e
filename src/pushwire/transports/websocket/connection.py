"""An open WebSocket on a socket: what a door that speaks HTTP/1.1 itself hands the socket to
after the 101 answer, and the hub's `Transport` for that client.

It feeds what the socket brings to the sans-I/O `WebSocketConnection`, hands whole messages
to the client's `Receiver`, answers Pings in stream order, and writes what the protocol says
to write. Its method names are those of an `asyncio.Protocol`, so the door installs it on the
socket with `set_protocol` and an open WebSocket costs this one object plus the protocol state.

Pings: one `PingSweep` per server pings every open WebSocket every `ping_interval` and drops
one whose Pong is `ping_timeout` late, with one timer for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Collection

from ...clock import Clock, Timer
from ...config import Config
from ...core.transport import Framing, Receiver, Transport
from ...guard import FAILURES
from ..socket import SocketTransport, await_opening
from .deflate import DeflateParams
from .protocol import (
    WebSocketClosed,
    WebSocketConnection,
    WebSocketMessage,
    WebSocketPing,
    WebSocketPong,
)

__all__ = ["PingSweep", "WebSocketTransport"]

log = logging.getLogger("pushwire.websocket")


def _dropped(data: bytes) -> None:
    """`WebSocketTransport.write` when nothing may be written: after our Close."""


class WebSocketTransport(SocketTransport):
    """One client's open WebSocket (see the module docstring).

    `socket` is the connection's asyncio transport; `on_lost` is called once when the
    connection is gone (the door's bookkeeping).
    """

    name = "websocket"
    # Slots: an idle WebSocket is this object plus the protocol state; keep it small.
    # The clock, config and `on_lost` are read from `pings`, which every WebSocket of a
    # server shares.
    __slots__ = (
        "close_written",
        "framing",
        "next_ping_at",
        "opening",
        "ping_sent_at",
        "pings",
        "remote",
        "window",
        "write",
        "ws",
    )
    #: The hub's write (Transport contract): the socket's own `write` while the WebSocket may
    #: carry data, else `_dropped`. The hub calls it once per subscriber per batch, so no
    #: Python frame of ours stands between it and the socket.
    write: Callable[[bytes], None]

    def __init__(
        self,
        socket: asyncio.Transport,
        framing: Framing,
        pings: PingSweep,
        remote: str | None = None,
        deflate: DeflateParams | None = None,
    ) -> None:
        # (positional: a class called with keywords builds a dict for them, per connection)
        # `_init_socket` and `_init_timer`, inline: a WebSocket is made per handshake.
        self.timer = self.timer_callback = self.receiver = self.closing = None
        self.timer_armed = self.timer_due = 0.0
        self.socket = socket
        self.framing = framing
        self.pings = pings
        self.remote = remote
        self.ws = WebSocketConnection(pings.config.max_message, deflate)
        self.opening: asyncio.Future[None] | None = None
        # Times shared with the other WebSockets pinged in the same sweep (`PingSweep`): a
        # float of its own was 24 bytes a connection.
        self.ping_sent_at = 0.0  # when the unanswered ping went out; 0.0: none is pending
        self.next_ping_at = 0.0
        self.close_written = False  # our Close frame is on the wire: no data after it
        # Bytes received since the current receive window of an unfinished message began;
        # -1: no message is unfinished (so an idle connection counts nothing).
        self.window = -1
        # Data may follow a Close the peer sent, until ours is written: a message that
        # arrived before the peer's Close is answered before our Close goes out.
        self.write = socket.write

    @property
    def clock(self) -> Clock:
        return self.pings.clock

    @property
    def config(self) -> Config:
        return self.pings.config

    @property
    def on_lost(self) -> Callable[[SocketTransport], object]:
        return self.pings.on_lost

    def start(self, make_receiver: Callable[[Transport], Receiver], first: bytes = b"") -> None:
        """The 101 answer is written: open the client's receiver, then take `first` (bytes
        that followed the upgrade request) as the first data received."""
        receiver = self.receiver = make_receiver(self)
        self.next_ping_at = self.pings.add(self)
        opening = receiver.open()
        if opening is not None:
            self.socket.pause_reading()
            self.opening = asyncio.ensure_future(self._open_later(opening, first))
        elif first:
            self.data_received(first)

    async def _open_later(self, opening: Awaitable[None], first: bytes) -> None:
        await await_opening(opening, self.close)
        self.opening = None
        if not self.socket.is_closing():
            self.socket.resume_reading()
            if first:
                self.data_received(first)

    # -- asyncio.Protocol (after the door's set_protocol) -----------------------------------

    def data_received(self, data: bytes) -> None:
        if self.window >= 0:
            self.window += len(data)
        try:
            ws = self.ws
            ws.receive_data(data)
            self._events()
            if self.window < 0 and ws.incomplete and ws.is_open:
                # A message began and did not end: bound its progress.
                self.window = 0
                self._set_timer(self.config.receive_window, self._progress)
        except Exception as exc:  # the last resort (pushwire.guard)
            self._failed(exc)

    def _progress(self) -> None:
        """A receive window passed while a message was unfinished (`min_receive_rate`)."""
        ws, config = self.ws, self.config
        if not ws.is_open:
            return
        if not ws.incomplete:
            self.window = -1
            return
        got = self.window
        if got < config.min_receive_rate * config.receive_window:
            self._cut(1008, f"message arrived slower than {config.min_receive_rate} bytes/s")
            return
        self.window = 0
        self._set_timer(config.receive_window, self._progress)

    def eof_received(self) -> bool | None:
        try:
            self.ws.receive_eof()
            self._events()
        except Exception as exc:  # the last resort (pushwire.guard)
            self._failed(exc)
        return None  # let asyncio close the transport

    def _failed(self, exc: Exception) -> None:
        """Something raised that nobody expected: log it (rate-limited), fail the WebSocket
        with 1011 and tell the receiver."""
        FAILURES.failed("websocket", exc, self.remote)
        self._cut(1011, "internal error")

    def _cut(self, code: int, reason: str) -> None:
        """Fail the WebSocket (RFC 6455 7.1.7: our Close, then the end of the stream; what the
        peer sends is discarded) and tell the receiver."""
        receiver, self.receiver = self.receiver, None
        self.ws.fail(code, reason)
        self._flush()
        self._set_timer(self.config.close_timeout, self.abort)
        if receiver is not None:
            receiver.closed(code, reason, by_client=False)

    def _incomplete(self) -> int:
        return self.ws.held_bytes

    def buffered(self) -> int:
        # `SocketTransport.buffered` in one frame: the memory budget asks every connection
        # each `memory_budget_interval` (a walk of all of them).
        return self.socket.get_write_buffer_size() + self.ws.held_bytes

    def _gone(self) -> None:
        self.write = _dropped
        self.pings.discard(self)

    def abort(self) -> None:
        """Drop the connection now; nothing more is written (uvloop raises on a write to a
        socket it closed, before `connection_lost` comes: found by tests/fuzz, a handler's
        reply after an await)."""
        self.write = _dropped
        self.socket.abort()

    # -- the protocol's events --------------------------------------------------------------

    def _events(self) -> None:
        ws = self.ws
        for event in ws.events_received():
            if isinstance(event, WebSocketMessage):
                if self.receiver is not None:
                    self.receiver.receive(event.data)
            elif isinstance(event, WebSocketPing):
                self.write(event.pong)  # in stream order: before later messages' answers
            elif isinstance(event, WebSocketPong):
                self.ping_sent_at = 0.0
            elif isinstance(event, WebSocketClosed):
                if self.receiver is not None:
                    # Ours went first (close_written), or the peer's: only a peer's Close
                    # is a client choosing to end its session.
                    receiver, self.receiver = self.receiver, None
                    by_client = event.by_peer and not self.close_written
                    receiver.closed(event.code, event.reason, by_client=by_client)
                self._set_timer(self.config.close_timeout, self.abort)
        if ws.has_data_to_send:  # most reads only bring messages: nothing to answer here
            self._flush()

    def _flush(self) -> None:
        ws, socket = self.ws, self.socket
        chunks = ws.data_to_send()
        if chunks and not ws.is_open:
            self.close_written = True  # these chunks hold our Close frame
            self.write = _dropped
        for chunk in chunks:
            if chunk:
                socket.write(chunk)
            elif socket.can_write_eof():
                # b"": half-close. RFC 6455 7.1.1: the server closes TCP first; reading on
                # lets the peer's Close arrive instead of meeting a reset (an unclean close).
                socket.write_eof()
                self._set_timer(self.config.close_timeout, self.abort)
            else:
                socket.close()

    def heartbeat(self, now: float, next_ping_at: float) -> None:
        """Called by the sweep at `now`: ping when due (the next one due at `next_ping_at`,
        one float for the whole sweep); drop a peer whose pong is overdue."""
        ws = self.ws
        if not ws.is_open:
            return
        if self.ping_sent_at:
            timeout = self.pings.config.ping_timeout
            if now - self.ping_sent_at > timeout:
                log.debug("no pong within %s s: dropping %s", timeout, self.remote)
                self.abort()
            return
        if now >= self.next_ping_at:
            self.ping_sent_at = now
            self.next_ping_at = next_ping_at
            ws.send_ping(os.urandom(4))
            self._flush()

    # -- Transport contract, and the door's ----------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with `code`; the TCP connection is dropped if the peer
        does not answer within `close_timeout`."""
        ws = self.ws
        if not ws.is_open:
            return
        self.closing = (code, reason)
        ws.send_close(code, reason)
        self._flush()
        self._set_timer(self.config.close_timeout, self.abort)


class PingSweep:
    """Pings every open WebSocket of a server with one timer: every quarter of the smaller
    of `ping_interval` and `ping_timeout`, each connection is checked (`heartbeat`). And what
    a server's WebSockets share: its config, clock and `on_lost` (the door's bookkeeping),
    kept here once rather than in every connection.

    `connections` is the server's set of open connections (the door's), WebSockets among
    others: the sweep keeps no set of its own (an entry of one costs about 50 bytes a
    connection). `discard`ed WebSockets are skipped until they leave that set.
    """

    def __init__(
        self,
        config: Config,
        clock: Clock,
        connections: Collection[object],
        on_lost: Callable[[SocketTransport], object],
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_lost = on_lost
        self.period = max(0.05, min(config.ping_interval, config.ping_timeout) / 4)
        self._connections = connections
        self._timer: Timer | None = None
        #: When a WebSocket opened now is first pinged, at least `ping_interval` from now:
        #: the next sweep's time plus `ping_interval` (so at most a period later than that),
        #: one float for all the WebSockets opened between two sweeps.
        self._first_ping_at = 0.0

    def add(self, connection: WebSocketTransport) -> float:
        """`connection` (one of `connections`) is open: it is pinged from now on, first at
        the time returned."""
        if self._timer is None:
            self._timer = self.clock.call_later(self.period, self._sweep)
            self._first_ping_at = self.clock.time() + self.config.ping_interval
        return self._first_ping_at

    def discard(self, connection: WebSocketTransport) -> None:
        """`connection` is gone (its heartbeat does nothing once it is not open)."""

    def _sweep(self) -> None:
        now = self.clock.time()
        interval = self.config.ping_interval
        next_ping_at = now + interval
        self._first_ping_at = next_ping_at + self.period
        for connection in list(self._connections):
            if isinstance(connection, WebSocketTransport):
                connection.heartbeat(now, next_ping_at)
        self._timer = self.clock.call_later(self.period, self._sweep) if self._connections else None

    def stop(self) -> None:
        """No more pings (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
