"""The asyncio server: the only code that owns sockets.

One `Connection` (an `asyncio.Protocol`) per TCP connection. It feeds bytes to the sans-I/O
parsers (`RequestParser`, `WebSocketConnection`), writes what they and the app return, and
keeps the timers: header timeout, keep-alive idle timeout, WebSocket ping/pong and close
timeouts. After an upgrade, the connection itself is the hub's `Transport` for that client,
so an open WebSocket costs one object here plus the protocol state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..config import Config
from ..errors import PushwireError, RemoteError
from ..transports.websocket import (
    RAW_FRAMING,
    WebSocketClosed,
    WebSocketConnection,
    WebSocketMessage,
    WebSocketPing,
    WebSocketPong,
)
from .parser import Request, RequestParser
from .response import CHUNKED_END, simple_response

if TYPE_CHECKING:
    from ..app import App
    from ..endpoint import EnvelopeHandler, RawHandler
    from ..transports.base import Framing

__all__ = ["Connection", "HttpStream", "OneTimer", "Server", "StreamStart"]

log = logging.getLogger("pushwire.server")


def _dropped(data: bytes) -> None:
    """`Connection.write` when nothing may be written: before the upgrade, after our Close."""


class OneTimer:
    """One timeout per connection at a time (setting one replaces the last), kept lazily.

    Setting a timeout that falls after the pending timer's keeps that timer: when it fires
    early it re-arms for what is left. So a request on a keep-alive connection, which lifts
    the idle timeout (`_disarm_timer`) and sets it again after the answer, makes no timer:
    making and cancelling one per request was ~5% of a long-poll server's time (py-spy).
    """

    __slots__ = ("timer", "timer_armed", "timer_callback", "timer_due")
    # asyncio.Handle: uvloop answers a call_at that is already due with a plain Handle.
    timer: asyncio.Handle | None
    timer_armed: float  # when `timer` fires
    timer_due: float  # when the timeout is due (at or after timer_armed while one is set)
    timer_callback: Callable[[], object] | None

    def _init_timer(self) -> None:
        """No timer yet (the subclasses' __init__ calls this)."""
        self.timer = None
        self.timer_armed = self.timer_due = 0.0
        self.timer_callback = None

    def _set_timer(self, delay: float, callback: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        self.timer_due = due
        self.timer_callback = callback
        timer = self.timer
        if timer is not None:
            if self.timer_armed <= due:
                return
            timer.cancel()
        self.timer_armed = due
        self.timer = loop.call_at(due, self._timer_fired)

    def _disarm_timer(self) -> None:
        """No timeout for now; the pending timer stays, to be reused or to fire idle."""
        self.timer_callback = None

    def _cancel_timer(self) -> None:
        """No timeout, and no pending timer (it would keep this object alive until it fires)."""
        self.timer_callback = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timer_fired(self) -> None:
        self.timer = None
        callback = self.timer_callback
        if callback is None:
            return
        if self.timer_due > self.timer_armed:  # set later since this timer was made: re-arm
            self.timer_armed = self.timer_due
            self.timer = asyncio.get_running_loop().call_at(self.timer_due, self._timer_fired)
            return
        self.timer_callback = None
        callback()


class Connection(OneTimer, asyncio.Protocol):
    """One client TCP connection: HTTP/1.x requests, then maybe a WebSocket."""

    name = "websocket"
    # Slots: an idle WebSocket is this object plus the protocol state; keep it small.
    __slots__ = (
        "busy",
        "close_written",
        "closing",
        "config",
        "framing",
        "handler",
        "next_ping_at",
        "parser",
        "ping_sent_at",
        "queued",
        "refusal",
        "remote",
        "server",
        "stream",
        "transport",
        "write",
        "ws",
    )
    #: The hub's write (Transport contract): the socket transport's own `write` while the
    #: WebSocket may carry data, else `_dropped`. The hub calls it once per subscriber per
    #: batch, so no Python frame of ours stands between it and the socket.
    write: Callable[[bytes], None]

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.transport: asyncio.Transport | None = None
        self.parser: RequestParser | None = RequestParser(
            self.config.max_header_bytes, self.config.max_body_bytes
        )
        self.busy = False  # a response is being produced asynchronously
        self.queued: list[Request] = []
        # A bad request's answer, written once the requests before it are answered.
        self.refusal: tuple[int, str] | None = None
        self._init_timer()
        self.closing = False
        # WebSocket state, set by upgrade()
        self.ws: WebSocketConnection | None = None
        self.handler: RawHandler | EnvelopeHandler | None = None
        self.framing: Framing = RAW_FRAMING
        self.ping_sent_at = 0.0  # when the unanswered ping went out; 0.0: none is pending
        self.next_ping_at = 0.0
        self.close_written = False  # our Close frame is on the wire: no data after it
        self.write = _dropped
        self.remote: str | None = None
        self.stream: HttpStream | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        server = self.server
        server.connections.add(self)
        server.accepted += 1
        peer = transport.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
        if len(server.connections) > self.config.max_connections or server.shutting_down:
            self._refuse(503, f"too many connections (> {self.config.max_connections})")
            return
        transport.set_write_buffer_limits(high=self.config.max_write_buffer)
        self._set_timer(self.config.keepalive_timeout, self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is not None:
            ws.receive_data(data)
            self._ws_events()
            return
        parser = self.parser
        if parser is None or self.closing:
            return
        was_idle = not parser.in_request
        was_in_head = parser.in_head
        try:
            parser.receive_data(data)
        except RemoteError as exc:
            # Requests completed before the bad one are answered first, then the refusal.
            self.refusal = (exc.http_status, str(exc))
            self.queued.extend(parser.events_received())
            self._run_queue()
            return
        if was_idle and parser.in_head:
            self._set_timer(self.config.header_timeout, self._header_timeout)
        elif (was_idle or was_in_head) and parser.in_request and not parser.in_head:
            # The head is complete, the body is not: bound the body's arrival too.
            self._set_timer(self.config.body_timeout, self._body_timeout)
        requests = parser.events_received()
        if requests:
            self._disarm_timer()
            self.queued.extend(requests)
            self._run_queue()
            if len(self.queued) >= self.config.max_pipelined and self.transport is not None:
                self.transport.pause_reading()  # resumed once the queue is answered

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self._ws_events()
        return None  # let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.write = _dropped
        self._cancel_timer()
        self.server.connections.discard(self)
        self.server.websockets.discard(self)
        if self.stream is not None:
            self.stream.lost()
        if self.handler is not None:
            handler, self.handler = self.handler, None
            handler.closed(1006, "connection lost", by_client=False)
        self.server.connection_closed()

    def pause_writing(self) -> None:
        # The socket buffer passed max_write_buffer: this client does not read fast enough.
        if self.ws is not None:
            asyncio.get_running_loop().call_soon(
                self.close, 4001, f"slow consumer (> {self.config.max_write_buffer} bytes queued)"
            )

    # -- HTTP -----------------------------------------------------------------------------------

    def _run_queue(self) -> None:
        while self.queued and not self.busy and not self.closing:
            request = self.queued.pop(0)
            if request.upgrade and (request.header("upgrade") or "").lower() == "websocket":
                self._upgrade(request)
                return
            try:
                result = self.server.app.handle_http(request)
            except PushwireError as exc:
                result = self._error_response(request, exc)
            if isinstance(result, bytes):
                self._respond(request, result)
            elif isinstance(result, StreamStart):
                self._start_stream(result)
                return
            elif isinstance(result, asyncio.Future):
                # A held answer (long-poll): respond when it is resolved, with no task.
                self.busy = True
                result.add_done_callback(functools.partial(self._respond_held, request))
            else:
                self.busy = True
                task = asyncio.ensure_future(self._respond_later(request, result))
                self.server.track(task)
        if self.refusal is not None and not self.queued and not self.busy and not self.closing:
            status, message = self.refusal
            self._refuse(status, message)
            return
        if not self.queued and not self.busy and not self.closing:
            if self.transport is not None and not self.transport.is_reading():
                self.transport.resume_reading()
            self._set_timer(self.config.keepalive_timeout, self._idle_timeout)

    async def _respond_later(self, request: Request, result: Awaitable[bytes]) -> None:
        try:
            response = await result
        except PushwireError as exc:
            response = self._error_response(request, exc)
        except Exception:
            log.exception("request handler failed: %s %s", request.method, request.path)
            response = self._error_response(request, PushwireError("internal error"))
        self._respond_after_wait(request, response)

    def _respond_held(self, request: Request, held: asyncio.Future[bytes]) -> None:
        try:
            response = held.result()
        except PushwireError as exc:
            response = self._error_response(request, exc)
        except (Exception, asyncio.CancelledError):
            log.exception("request handler failed: %s %s", request.method, request.path)
            response = self._error_response(request, PushwireError("internal error"))
        self._respond_after_wait(request, response)

    def _respond_after_wait(self, request: Request, response: bytes) -> None:
        self.busy = False
        self._respond(request, response)
        self._run_queue()

    def _respond(self, request: Request, response: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(response)
        if not self.keep_alive(request):
            self.closing = True
            self.transport.close()

    def keep_alive(self, request: Request) -> bool:
        """Whether the connection stays open after answering `request`."""
        return request.keep_alive and not self.server.shutting_down and not request.upgrade

    def _error_response(self, request: Request, exc: PushwireError) -> bytes:
        return self.server.app.error_response(request, exc, self.keep_alive(request))

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request we could not parse, then close: the stream is not trustworthy."""
        self.closing = True
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(simple_response(status, message + "\n", keep_alive=False))
            self.transport.close()

    def _header_timeout(self) -> None:
        self._refuse(408, f"request head not received within {self.config.header_timeout} s")

    def _body_timeout(self) -> None:
        self._refuse(408, f"request body not received within {self.config.body_timeout} s")

    def _idle_timeout(self) -> None:
        if self.transport is not None and not self.busy:
            self.closing = True
            self.transport.close()

    # -- streaming responses (stream, sse, iframe) ------------------------------------------------

    def _start_stream(self, start: StreamStart) -> None:
        """The response never ends: from now on this connection carries one client's stream."""
        assert self.transport is not None
        self.parser = None
        self._cancel_timer()
        self.transport.write(start.head)
        stream = HttpStream(self, start)
        self.stream = stream
        handler = start.make_handler(stream)
        stream.handler = handler
        opening = handler.open()
        if opening is not None:
            self.server.track(asyncio.ensure_future(stream.run_opening(opening)))
        if start.hello is not None:
            handler.receive(start.hello)
        self._set_timer(self.config.heartbeat_interval, stream.heartbeat)

    # -- WebSocket ------------------------------------------------------------------------------

    def _upgrade(self, request: Request) -> None:
        app = self.server.app
        try:
            handshake, framing, handler = app.upgrade(request, self)
        except PushwireError as exc:
            self._respond(request, self._error_response(request, exc))
            self.closing = True
            if self.transport is not None:
                self.transport.close()
            return
        self.parser = None
        self.ws = WebSocketConnection(self.config.max_message)
        self.framing = framing
        self.handler = handler
        assert self.transport is not None
        self.transport.write(handshake)
        # Data may follow a Close the peer sent, until ours is written: a message that
        # arrived before the peer's Close is answered before our Close goes out.
        self.write = self.transport.write
        opening = handler.open()
        if opening is not None:
            self.transport.pause_reading()
            task = asyncio.ensure_future(self._open_later(opening, request))
            self.server.track(task)
        elif request.upgrade_data:
            self.data_received(request.upgrade_data)
        self._cancel_timer()
        self.next_ping_at = asyncio.get_running_loop().time() + self.config.ping_interval
        self.server.websockets.add(self)

    async def _open_later(self, opening: Awaitable[None], request: Request) -> None:
        try:
            await opening
        except PushwireError as exc:
            self.close(exc.close_code, str(exc)[:120])
        except Exception:
            log.exception("connect handler failed")
            self.close(1011, "internal error")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            if request.upgrade_data:
                self.data_received(request.upgrade_data)

    def _ws_events(self) -> None:
        ws = self.ws
        assert ws is not None
        for event in ws.events_received():
            if isinstance(event, WebSocketMessage):
                if self.handler is not None:
                    self.handler.receive(event.data)
            elif isinstance(event, WebSocketPing):
                self.write(event.pong)  # in stream order: before later messages' answers
            elif isinstance(event, WebSocketPong):
                self.ping_sent_at = 0.0
            elif isinstance(event, WebSocketClosed):
                if self.handler is not None:
                    # Ours went first (close_written), or the peer's: only a peer's Close
                    # is a client choosing to end its session.
                    handler, self.handler = self.handler, None
                    by_client = event.by_peer and not self.close_written
                    handler.closed(event.code, event.reason, by_client=by_client)
                self._set_timer(self.config.close_timeout, self.abort)
        if ws.has_data_to_send:  # most reads only bring messages: nothing to answer here
            self._flush()

    def _flush(self) -> None:
        ws, transport = self.ws, self.transport
        assert ws is not None
        if transport is None:
            return
        chunks = ws.data_to_send()
        if chunks and not ws.is_open:
            self.close_written = True  # these chunks hold our Close frame
            self.write = _dropped
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                # b"": half-close. RFC 6455 7.1.1: the server closes TCP first; reading on
                # lets the peer's Close arrive instead of meeting a reset (an unclean close).
                transport.write_eof()
                self._set_timer(self.config.close_timeout, self.abort)
            else:
                transport.close()

    def heartbeat(self, now: float) -> None:
        """Called by the server's sweep: ping when due; drop a peer whose pong is overdue."""
        ws = self.ws
        if ws is None or not ws.is_open:
            return
        if self.ping_sent_at:
            if now - self.ping_sent_at > self.config.ping_timeout:
                log.debug("no pong within %s s: dropping %s", self.config.ping_timeout, self.remote)
                self.abort()
            return
        if now >= self.next_ping_at:
            self.ping_sent_at = now
            self.next_ping_at = now + self.config.ping_interval
            ws.send_ping(os.urandom(4))
            self._flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- Transport contract (the hub writes to an open WebSocket through these) ----------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with `code`; the TCP connection is dropped if the peer
        does not answer within `close_timeout`."""
        ws = self.ws
        if ws is None:
            if self.transport is not None:
                self.transport.close()
            return
        if not ws.is_open:
            return
        ws.send_close(code, reason)
        self._flush()
        self._set_timer(self.config.close_timeout, self.abort)

    def shutdown(self) -> None:
        """Server shutdown: WebSockets get 1001, streams a `close` envelope with 1001, idle
        keep-alive connections are closed, a response in flight finishes first."""
        if self.ws is not None:
            self.close(1001, "server shutting down")
        elif self.stream is not None:
            self.stream.close(1001, "server shutting down")
        elif not self.busy and (self.parser is None or not self.parser.in_request):
            self._idle_timeout()


class StreamStart:
    """An app's answer that starts a never-ending response: its head, its framing, and how to
    make the handler of the client it carries. `hello` is the opening envelope (from the URL)."""

    __slots__ = ("framing", "head", "heartbeat", "hello", "kind", "make_handler", "max_bytes")

    def __init__(
        self,
        *,
        kind: str,
        head: bytes,
        framing: Framing,
        heartbeat: bytes,
        make_handler: Callable[[HttpStream], RawHandler | EnvelopeHandler],
        hello: str | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.kind = kind
        self.head = head
        self.framing = framing
        self.heartbeat = heartbeat
        self.make_handler = make_handler
        self.hello = hello
        self.max_bytes = max_bytes


class HttpStream:
    """The hub's `Transport` for a client on a streaming response (stream, sse, iframe).

    Frames arrive already wrapped as HTTP/1.1 chunks by the framing, so a write is one
    `transport.write`. Closing writes a `close` envelope and ends the body. After `max_bytes`
    (the iframe's bound) the stream closes with 4000: the client opens a new one and resumes.
    """

    __slots__ = (
        "connection",
        "done",
        "framing",
        "handler",
        "heartbeat_frame",
        "max_bytes",
        "name",
        "sent",
    )

    def __init__(self, connection: Connection, start: StreamStart) -> None:
        self.connection = connection
        self.name = start.kind
        self.framing = start.framing
        self.heartbeat_frame = start.heartbeat
        self.max_bytes = start.max_bytes
        self.sent = 0
        self.done = False
        self.handler: RawHandler | EnvelopeHandler | None = None

    def write(self, data: bytes) -> None:
        transport = self.connection.transport
        if self.done or not data or transport is None:
            return
        transport.write(data)
        if self.max_bytes is not None:
            self.sent += len(data)
            if self.sent > self.max_bytes:
                asyncio.get_running_loop().call_soon(self.close, 4000, "stream recycled")

    def close(self, code: int, reason: str) -> None:
        """End the response with a `close` envelope; the session is detached (resumable)."""
        if self.done:
            return
        self.write(self.framing.frame_control({"type": "close", "code": code, "reason": reason}))
        self.done = True
        transport = self.connection.transport
        if transport is not None and not transport.is_closing():
            transport.write(CHUNKED_END)
            transport.close()
        self._closed(code, reason)

    def lost(self) -> None:
        """The client went away."""
        if not self.done:
            self.done = True
            self._closed(1006, "connection lost")

    def _closed(self, code: int, reason: str) -> None:
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.closed(code, reason, by_client=False)

    def heartbeat(self) -> None:
        if self.done:
            return
        transport = self.connection.transport
        if transport is not None:
            transport.write(self.heartbeat_frame)
        self.connection._set_timer(self.connection.config.heartbeat_interval, self.heartbeat)

    async def run_opening(self, opening: Awaitable[None]) -> None:
        try:
            await opening
        except PushwireError as exc:
            self.close(exc.close_code, str(exc)[:120])
        except Exception:
            log.exception("opening a stream failed")
            self.close(1011, "internal error")


class ServerConnection(Protocol):
    """What the server needs of every connection it tracks (HTTP/WebSocket or TCP)."""

    def shutdown(self) -> None: ...

    def abort(self) -> None: ...


class Server:
    """Listening sockets, the set of open connections, and graceful shutdown."""

    def __init__(self, app: App, config: Config) -> None:
        self.app = app
        app.server = self
        self.config = config
        self.connections: set[ServerConnection] = set()
        # Open WebSockets: one sweep pings them all, instead of a timer each.
        self.websockets: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.accepted = 0  # TCP connections accepted since start
        self.shutting_down = False
        self._servers: list[asyncio.base_events.Server] = []
        self.tcp_servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drained: asyncio.Event | None = None

    @property
    def sockets(self) -> list[socket.socket]:
        """The HTTP/WebSocket listening sockets."""
        tcp = set(map(id, self.tcp_servers))
        return [s for server in self._servers if id(server) not in tcp for s in server.sockets]

    async def start(
        self, sock: socket.socket | None = None, *, tcp_sock: socket.socket | None = None
    ) -> None:
        """Listen for HTTP/WebSocket (on `sock`, or host:port), and for TCP clients (on
        `tcp_sock`, or `tcp_port` if set)."""
        loop = asyncio.get_running_loop()
        config = self.config
        tls = self._tls_context()
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._sweep_period(), self._sweep)
        if sock is not None:
            server = await loop.create_server(
                lambda: Connection(self), sock=sock, backlog=4096, ssl=tls
            )
        else:
            server = await loop.create_server(
                lambda: Connection(self), config.host, config.port, backlog=4096, ssl=tls
            )
        self._servers.append(server)
        if config.tcp_port is not None:
            from ..tcpserver import TcpConnection

            ports: list[int] = []
            tcp = await loop.create_server(
                lambda: TcpConnection(self, ports[0]),
                config.host,
                config.tcp_port,
                backlog=4096,
                ssl=tls,
            )
            ports.append(tcp.sockets[0].getsockname()[1])
            self.tcp_servers.append(tcp)
            self._servers.append(tcp)

    def _sweep_period(self) -> float:
        return max(0.05, min(self.config.ping_interval, self.config.ping_timeout) / 4)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self.websockets):
            connection.heartbeat(now)
        self._sweeper = loop.call_later(self._sweep_period(), self._sweep)

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection_closed(self) -> None:
        if self._drained is not None and not self.connections:
            self._drained.set()

    async def shutdown(self) -> None:
        """Stop accepting, close every connection politely, wait up to `shutdown_timeout`."""
        self.shutting_down = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        self._drained = asyncio.Event()
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            try:
                await asyncio.wait_for(self._drained.wait(), self.config.shutdown_timeout)
            except TimeoutError:
                log.warning("dropping %d connections at shutdown", len(self.connections))
                for connection in list(self.connections):
                    connection.abort()
        for server in self._servers:
            await server.wait_closed()
