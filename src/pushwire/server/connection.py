"""One client TCP connection speaking HTTP/1.x: requests in, answers out, until it closes, is
taken over by a WebSocket, or carries a never-ending answer.

`HttpConnection` (an `asyncio.Protocol`) feeds the bytes to the sans-I/O `RequestParser`,
hands each request to the app, and writes the answer: at once, when an awaitable resolves
(a long-poll, a publish), or as a stream (`HttpStream`). It keeps the connection's one timer:
header timeout, body timeout, keep-alive idle timeout (a stream's heartbeats are the door's
`HeartbeatSweep`, one timer for all). Pipelined requests are answered in order; a request
that cannot be parsed is answered (after those before it) and the connection closed.

An accepted WebSocket upgrade hands the socket over: after the 101 the socket's events go to
the WebSocket transport (`transports.websocket.connection`; the loop's protocol is the
connection's `Wire`), and this object is gone.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable
from typing import Final

from ..clock import Clock, OneTimer
from ..core.transport import Framing
from ..errors import PushwireError, RemoteError
from ..guard import FAILURES
from ..http11 import simple_response
from ..logs import access
from ..transports.websocket.connection import WebSocketTransport
from ..transports.websocket.deflate import deflate_framing, negotiate_deflate
from ..transports.websocket.framing import ENVELOPE_FRAMING, RAW_FRAMING
from ..transports.websocket.handshake import switching_protocols
from ..web import Request, Response, StreamResponse
from .door import Door
from .head import parse_head
from .parser import RequestParser
from .stream import HttpStream, open_stream
from .wire import Wire

__all__ = ["HttpConnection"]

#: The headers a held request keeps (`App.error_response` reads them for CORS).
_HELD_HEADERS = frozenset(("host", "origin"))
#: A head ends so; an upgrade's head holds an Upgrade header, mostly spelt `Upgrade:` or
#: `upgrade:` (`_handshake_at_once`; any other spelling goes the parser's way).
_END_OF_HEAD: Final = b"\r\n\r\n"
_UPGRADE_FIELD: Final = b"pgrade:"


class HttpConnection(OneTimer, asyncio.Protocol):
    """One client TCP connection: HTTP/1.x requests (see the module docstring)."""

    __slots__ = (
        "body_deadline",
        "busy",
        "closing",
        "door",
        "parser",
        "peer",
        "progress_mark",
        "queued",
        "received",
        "refusal",
        "remote",
        "stream",
        "transport",
    )

    def __init__(self, door: Door) -> None:
        # (`_init_timer`, inline: a connection is made per accept)
        self.timer = self.timer_callback = None
        self.timer_armed = self.timer_due = 0.0
        self.door = door
        self.transport: asyncio.Transport | None = None
        #: Made at the first bytes (`data_received`); None again once the connection carries
        #: no more requests (`closing`, or a `stream`).
        self.parser: RequestParser | None = None
        self.busy = False  # an answer is being produced asynchronously
        self.queued: list[Request] = []
        # A bad request's answer, written once the requests before it are answered.
        self.refusal: tuple[int, str] | None = None
        self.closing = False
        self.remote: str | None = None
        self.peer: str | None = None  # the peer's IP address
        self.stream: HttpStream | None = None
        #: Bytes received since the connection opened (the body's progress is counted in them).
        self.received = 0
        self.progress_mark = 0  # `received` when the body's current receive window began
        self.body_deadline = 0.0  # when the body being received must be complete

    @property
    def clock(self) -> Clock:
        return self.door.clock

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # (uvloop's transports are not asyncio.Transport subclasses, but have its interface:
        # typed so, not cast, which is a call per connection)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            # Interned: the connections from one address (a proxy, a NAT) share its string.
            ip = self.peer = sys.intern(peer[0])
            self.remote = f"{ip}:{peer[1]}"
        door = self.door
        refusal = door.opened(self, self.peer)
        if refusal is not None:
            if door.tls is not None:
                # No handshake for a connection over a bound: nothing could be answered.
                self.closing = True
                transport.abort()
                return
            self._refuse(503, refusal)
            return
        if door.tls is not None:
            self._set_timer(door.config.header_timeout, self.abort)  # start_tls has its own
            door.handshake(transport, self, self._secured)
            return
        # (`_serve`, inline: a connection is made per accept)
        config = door.config
        transport.set_write_buffer_limits(config.max_write_buffer)
        door.defer_timeout(self, config.keepalive_timeout, self._idle_timeout)

    def _secured(self, transport: asyncio.Transport) -> None:
        """The TLS handshake is done: HTTP on the TLS transport."""
        self.transport = transport
        self._serve(transport)

    def _serve(self, transport: asyncio.Transport) -> None:
        door = self.door
        config = door.config
        transport.set_write_buffer_limits(config.max_write_buffer)
        # Armed by the door a little later, if no request came by then.
        door.defer_timeout(self, config.keepalive_timeout, self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        try:
            parser = self.parser
            config = self.door.config
            if parser is None:
                if self.closing or self.stream is not None:
                    return
                # The connection's first bytes.
                if self._handshake_at_once(data):
                    return
                parser = self.parser = RequestParser(config.max_header_bytes, config.max_body_bytes)
            elif self.closing:
                return
            was_idle = not parser.in_request
            was_in_head = parser.in_head
            self.received += len(data)
            try:
                parser.receive_data(data)
            except RemoteError as exc:
                # Requests completed before the bad one are answered first, then the refusal.
                self.refusal = (exc.http_status, str(exc))
                self.queued.extend(parser.events_received())
                self._run_queue()
                return
            if was_idle and parser.in_head:
                self._set_timer(config.header_timeout, self._header_timeout)
            elif (was_idle or was_in_head) and parser.in_request and not parser.in_head:
                self._body_begun()  # the head is complete, the body is not: bound its arrival
            requests = parser.events_received()
            if requests:
                self._disarm_timer()
                self.queued.extend(requests)
                self._run_queue()
                if parser.in_request and not parser.in_head and not self.closing:
                    self._body_begun()  # a pipelined request's body began after them
                if len(self.queued) >= config.max_pipelined and self.transport is not None:
                    self.transport.pause_reading()  # resumed once the queue is answered
        except Exception as exc:  # the last resort (pushwire.guard)
            self._failed(exc)

    def _handshake_at_once(self, data: bytes) -> bool:
        """Whether the connection's first bytes were one whole WebSocket handshake head, and
        it was answered (the common first read of a WebSocket client): parsed as the parser's
        fast path parses it, but without the parser and its queue of requests. False (and
        nothing done) for any other bytes: the parser takes them."""
        if (
            _UPGRADE_FIELD not in data
            or data[-4:] != _END_OF_HEAD
            or len(data) > self.door.config.max_header_bytes
        ):
            return False
        request = parse_head(data)
        if (
            request is None
            or not request.upgrade
            or (request.header("upgrade") or "").lower() != "websocket"
        ):
            return False  # (the parser parses it again: a rare head)
        self.received = len(data)
        self._disarm_timer()
        door = self.door
        if door.trusting:
            door.from_client(request, self.peer, self.remote)
        else:
            request.remote, request.address = self.remote, self.peer
        self._upgrade(request)
        return True

    def eof_received(self) -> bool | None:
        return None  # let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.parser is not None:
            self.parser.release()
        if self.stream is not None:
            self.stream.lost()
        self.door.closed(self)

    def pause_writing(self) -> None:
        # The socket's buffer passed max_write_buffer. An answer is bounded by its request;
        # a stream's client does not read fast enough: a slow consumer, closed like a
        # WebSocket's (4001), then aborted if it does not take the rest (`_stream_ended`).
        stream = self.stream
        if stream is not None and not stream.done:
            limit = self.door.config.max_write_buffer
            asyncio.get_running_loop().call_soon(
                stream.close, 4001, f"slow consumer (> {limit} bytes queued)"
            )

    def resume_writing(self) -> None:
        pass

    def buffered(self) -> int:
        """Bytes held for this client: the socket's write buffer and an unfinished request
        body (the memory budget, pushwire.core.budget)."""
        transport, parser = self.transport, self.parser
        held = transport.get_write_buffer_size() if transport is not None else 0
        return held + parser.held if parser is not None else held

    def shed(self, reason: str) -> None:
        """Closed for the memory budget: a stream with 4001 (a slow consumer), anything else
        with 503; dropped if it does not take that within `close_timeout`."""
        if self.stream is not None:
            self.stream.close(4001, reason)  # aborted by `_stream_ended` if not taken
            return
        self._refuse(503, reason)
        self._set_timer(self.door.config.close_timeout, self.abort)

    # -- requests -------------------------------------------------------------------------------

    def _run_queue(self) -> None:
        door = self.door
        app = door.app
        while self.queued and not self.busy and not self.closing:
            request = self.queued.pop(0)
            if door.trusting:
                door.from_client(request, self.peer, self.remote)
            else:
                request.remote, request.address = self.remote, self.peer
            if request.upgrade and (request.header("upgrade") or "").lower() == "websocket":
                self._upgrade(request)
                return
            try:
                result = app.handle_http(request)
            except PushwireError as exc:
                result = self._error_response(request, exc)
            except Exception as exc:  # the last resort (pushwire.guard)
                self._failed(exc)
                return
            if isinstance(result, Response):
                self._respond(request, result)
            elif isinstance(result, StreamResponse):
                self._start_stream(request, result)
                return
            elif isinstance(result, asyncio.Future):
                # A held answer (long-poll): respond when it is resolved, with no task. The
                # parser rests meanwhile (its llhttp is freed until the next request), and
                # the request keeps only the headers its late answer reads (an error's CORS
                # headers): ~1.5 KiB less a held poll.
                self.busy = True
                if self.parser is not None:
                    self.parser.rest()
                request.headers = [pair for pair in request.headers if pair[0] in _HELD_HEADERS]
                result.add_done_callback(functools.partial(self._respond_held, request))
            else:
                self.busy = True
                self.door.track(asyncio.ensure_future(self._respond_later(request, result)))
        if self.refusal is not None and not self.queued and not self.busy and not self.closing:
            status, message = self.refusal
            self._refuse(status, message)
            return
        if not self.queued and not self.busy and not self.closing:
            if self.transport is not None and not self.transport.is_reading():
                self.transport.resume_reading()
            self._set_timer(self.door.config.keepalive_timeout, self._idle_timeout)

    async def _respond_later(
        self, request: Request, result: Awaitable[Response | StreamResponse]
    ) -> None:
        response: Response | StreamResponse
        try:
            response = await result
        except PushwireError as exc:
            response = self._error_response(request, exc)
        except Exception as exc:
            FAILURES.failed(f"http ({request.method} {request.path[:80]})", exc, self.remote)
            response = self._error_response(request, PushwireError("internal error"))
        if isinstance(response, StreamResponse):
            # A stream the app let open only after awaiting (a raw SSE client's checks).
            self.busy = False
            if self.transport is not None and not self.transport.is_closing():
                self._start_stream(request, response)
            return
        self._respond_after_wait(request, response)

    def _respond_held(self, request: Request, held: asyncio.Future[Response]) -> None:
        try:
            response = held.result()
        except PushwireError as exc:
            response = self._error_response(request, exc)
        except (Exception, asyncio.CancelledError) as exc:
            FAILURES.failed(f"http ({request.method} {request.path[:80]})", exc, self.remote)
            response = self._error_response(request, PushwireError("internal error"))
        self._respond_after_wait(request, response)

    def _respond_after_wait(self, request: Request, response: Response) -> None:
        self.busy = False
        self._respond(request, response)
        self._run_queue()

    def _respond(self, request: Request, response: Response) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = self.keep_alive(request)
        transport.write(
            response.encode(
                version="1.0" if request.version == "1.0" else "1.1",
                keep_alive=keep_alive,
                head_only=request.method == "HEAD",
            )
        )
        if self.door.access_log:
            access(
                request.method,
                request.path,
                request.query,
                response.status,
                len(response.body),
                self.remote,
            )
        if not keep_alive:
            self.closing = True
            transport.close()

    def keep_alive(self, request: Request) -> bool:
        """Whether the connection stays open after answering `request`."""
        return request.keep_alive and not self.door.shutting_down and not request.upgrade

    def _error_response(self, request: Request, exc: PushwireError) -> Response:
        return self.door.app.error_response(request, exc)

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request we could not parse, then close: the stream is not trustworthy."""
        self.closing = True
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(simple_response(status, message + "\n", keep_alive=False))
            self.transport.close()

    def _failed(self, exc: Exception) -> None:
        """Something raised that nobody expected: log it (rate-limited) and close this
        connection, with a 500 unless an answer is under way (then it is cut short)."""
        FAILURES.failed("http", exc, self.remote)
        if self.stream is None and not self.busy:
            self._refuse(500, "internal error")
            return
        self.closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _header_timeout(self) -> None:
        timeout = self.door.config.header_timeout
        self._refuse(408, f"request head not received within {timeout} s")

    def _body_begun(self) -> None:
        """A body is on its way: it must end within `body_timeout` and bring at least
        `min_receive_rate` bytes a second over each `receive_window` until then."""
        config = self.door.config
        now = self.clock.time()
        self.body_deadline = now + config.body_timeout
        self.progress_mark = self.received
        self._set_timer(min(config.receive_window, config.body_timeout), self._body_progress)

    def _body_progress(self) -> None:
        parser = self.parser
        if parser is None or not parser.in_request or parser.in_head:
            return  # the body ended (its request is being answered)
        config = self.door.config
        now = self.clock.time()
        left = self.body_deadline - now
        if left < 0.001:  # (a timer may fire a hair early on float time)
            self._refuse(408, f"request body not received within {config.body_timeout} s")
            return
        got = self.received - self.progress_mark
        if got < config.min_receive_rate * config.receive_window:
            self._refuse(
                408,
                f"request body arrived slower than {config.min_receive_rate} bytes/s "
                f"({got} bytes in {config.receive_window} s)",
            )
            return
        self.progress_mark = self.received
        self._set_timer(min(config.receive_window, left), self._body_progress)

    def _idle_timeout(self) -> None:
        if self.transport is not None and not self.busy:
            self.closing = True
            self.transport.close()

    # -- never-ending answers (stream, sse, iframe) -----------------------------------------------

    def _start_stream(self, request: Request, start: StreamResponse) -> None:
        """The answer never ends: from now on this connection carries one client's stream."""
        transport = self.transport
        assert transport is not None
        if self.parser is not None:
            self.parser.release()
        self.parser = None
        self._cancel_timer()
        if self.door.access_log:
            access(request.method, request.path, request.query, start.status, None, self.remote)
        door = self.door
        self.stream = open_stream(transport, start, self._stream_ended, door.heartbeats, door.track)

    def _stream_ended(self) -> None:
        """The stream's end is written: a client that does not take it within
        `close_timeout` (a slow consumer) is dropped, so its buffer is freed."""
        self._set_timer(self.door.config.close_timeout, self.abort)

    # -- WebSocket ------------------------------------------------------------------------------

    def _upgrade(self, request: Request) -> None:
        """Hand the socket to an open WebSocket, or answer why not."""
        door = self.door
        transport = self.transport
        assert transport is not None
        try:
            accept = door.app.websocket(request)
        except PushwireError as exc:
            self._respond(request, self._error_response(request, exc))
            self.closing = True
            transport.close()
            return
        self.parser = None  # (it let go of llhttp when it took the upgrade)
        self.closing = True
        self._cancel_timer()
        config = door.config
        framing: Framing = ENVELOPE_FRAMING if accept.envelope else RAW_FRAMING
        deflate = None
        if config.websocket_compression:
            deflate = negotiate_deflate(request.header_values("sec-websocket-extensions"))
            if deflate is not None:
                framing = deflate_framing(
                    accept.envelope,
                    deflate.server_max_window_bits,
                    config.websocket_compression_threshold,
                )
        websocket = WebSocketTransport(transport, framing, door.pings, self.remote, deflate)
        extensions = deflate.response if deflate is not None else None
        transport.write(switching_protocols(accept.key or request, accept.subprotocol, extensions))
        if door.access_log:
            access(request.method, request.path, request.query, 101, None, self.remote)
        wire = transport.get_protocol()
        if isinstance(wire, Wire):
            wire.to = websocket  # (the loop keeps calling the same object: `Wire`)
        else:
            transport.set_protocol(websocket)  # a TLS connection's: no reading restarted
        door.handed_over(self, websocket)
        websocket.start(accept.make_receiver, request.upgrade_data)

    def shutdown(self) -> None:
        """Server shutdown: a stream gets a `close` envelope with 1001, an idle keep-alive
        connection is closed, an answer in flight finishes first."""
        if self.stream is not None:
            self.stream.close(1001, "server shutting down")
        elif not self.busy and (self.parser is None or not self.parser.in_request):
            self._idle_timeout()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
