"""The HTTP transports' endpoints: what a client does when WebSocket is not available.

For an endpoint E (`/pushwire`, `/echo`, `/ws/<channel>`):

| request | transport |
|---|---|
| `GET E/stream?hello=…` | one chunked NDJSON response, an envelope a line |
| `GET E/sse?hello=…` | one `text/event-stream` response, an envelope an event |
| `GET E/iframe?hello=…&origin=…` | one `text/html` forever frame posting envelopes to its parent |
| `GET E/longpoll?hello=…` then `?session=S&cursor=C` | held until something is queued |
| `GET E/polling?hello=…` then `?session=S&cursor=C` | answered at once |
| `POST E/send?session=S` | client envelopes, one a line (NDJSON); answers 204 |
| `GET /sse/<channel>` | raw SSE for a plain `EventSource`, `Last-Event-ID` resumes |

`hello` is the pushwire.v1 `hello` envelope (JSON, URL-encoded): every downstream request
that opens a connection carries it, so opening and resuming a session are the same for every
transport. CORS follows the Origin allow-list, with credentials.

A poll or send of a session that another node holds (with a Redis broker, see
`pushwire.routing`) is forwarded to that node, which runs the same `poll_session` or
`send_session` as for a local request; this node writes the answer with its own headers.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import orjson

from .config import Config
from .core import Hub
from .endpoint import ClientInfo, Endpoint, EnvelopeHandler, RawHandler
from .errors import (
    BadRequest,
    Forbidden,
    Gone,
    MethodNotAllowed,
    NotConnected,
    RemoteError,
    Unavailable,
)
from .http.parser import Request
from .http.response import chunk, response_head
from .http.server import HttpStream, StreamStart
from .message import Position
from .transports.iframe import IFRAME_FRAMING, IFRAME_HEARTBEAT, iframe_prelude
from .transports.poll import PollBatch, PollTransport
from .transports.sse import RAW_SSE_FRAMING, SSE_FRAMING, SSE_HEARTBEAT, parse_last_event_id
from .transports.stream import STREAM_FRAMING, STREAM_HEARTBEAT
from .transports.websocket import OriginPolicy

if TYPE_CHECKING:
    from .routing import Router
    from .transports.base import Framing

__all__ = [
    "TRANSPORT_SUFFIXES",
    "HttpTransports",
    "error_body",
    "split_transport",
]

STREAM_KINDS: Final = ("stream", "sse", "iframe")
POLL_KINDS: Final = ("polling", "longpoll")
TRANSPORT_SUFFIXES: Final = (*STREAM_KINDS, *POLL_KINDS, "send")

_CONTENT_TYPES: Final = {
    "stream": "application/x-ndjson; charset=utf-8",
    "sse": "text/event-stream; charset=utf-8",
    "iframe": "text/html; charset=utf-8",
}
_NO_BUFFERING: Final = [("Cache-Control", "no-cache, no-store"), ("X-Accel-Buffering", "no")]
# The constant start of a poll answer (HTTP/1.1, keep-alive, no CORS).
_POLL_HEAD: Final = response_head(
    200, [("Content-Type", "application/x-ndjson; charset=utf-8"), *_NO_BUFFERING], length=0
).removesuffix(b"Content-Length: 0\r\n\r\n")
#: Reconnection delay a raw EventSource is told (milliseconds).
SSE_RETRY_MS: Final = 2000


def split_transport(path: str) -> tuple[str, str | None]:
    """`/pushwire/longpoll` -> (`/pushwire`, `longpoll`); paths without a suffix unchanged."""
    head, _, last = path.rpartition("/")
    if head and last in TRANSPORT_SUFFIXES:
        return head, last
    return path, None


class HttpTransports:
    """Serves the HTTP transports of every endpoint."""

    def __init__(self, hub: Hub, config: Config, policy: OriginPolicy) -> None:
        self.hub = hub
        self.config = config
        self.policy = policy
        # Poll transports that closed with frames their client has not fetched yet (the
        # `close` envelope at least), by session id, kept for one poll_grace.
        self._closed_polls: dict[str, PollTransport] = {}
        #: Forwards requests for sessions held by other nodes (None: one process).
        self.router: Router | None = None

    def cors(self, request: Request, endpoint: Endpoint | None) -> list[tuple[str, str]]:
        """CORS headers for an allowed Origin (none without Origin). Raises `Forbidden`."""
        origin = request.header("origin")
        if origin is None:
            return []
        any_origin = endpoint is not None and endpoint.any_origin
        if not self.policy.allows(origin, request.header("host"), any_origin=any_origin):
            raise Forbidden(f"origin {origin!r} is not allowed")
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "Pushwire-Cursor"),
            ("Vary", "Origin"),
        ]

    def preflight(self, request: Request, endpoint: Endpoint | None) -> bytes:
        """Answer a CORS preflight (OPTIONS)."""
        headers = self.cors(request, endpoint)
        requested = request.header("access-control-request-headers")
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", requested or "Content-Type"),
            ("Access-Control-Max-Age", "600"),
        ]
        return response_head(204, headers, keep_alive=request.keep_alive, length=0)

    def handle(
        self, request: Request, endpoint: Endpoint, kind: str
    ) -> bytes | Awaitable[bytes] | StreamStart:
        cors = self.cors(request, endpoint)
        if kind == "send":
            if request.method != "POST":
                message = f"{request.path} takes POST, not {request.method}"
                raise MethodNotAllowed(message, "POST, OPTIONS")
            return self._send(request, cors)
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.path} takes GET, not {request.method}")
        if kind in STREAM_KINDS:
            return self._stream(request, endpoint, kind, cors)
        return self._poll(request, endpoint, kind, cors)

    # -- client to server ---------------------------------------------------------------------

    def _handler_of(self, session_id: str) -> tuple[EnvelopeHandler, PollTransport | None]:
        session = self.hub.sessions.get(session_id)
        if session is None or session.closed:
            raise Gone(f"unknown or expired session {session_id!r}")
        transport = session.transport
        handler = getattr(transport, "handler", None)
        if not isinstance(handler, EnvelopeHandler):
            raise NotConnected(f"session {session_id!r} has no connection: reconnect it first")
        return handler, transport if isinstance(transport, PollTransport) else None

    def _send(self, request: Request, cors: list[tuple[str, str]]) -> bytes | Awaitable[bytes]:
        session_id = request.query_param("session") or ""
        router = self.router
        if router is not None and (home := router.home_of(session_id)) is not None:
            return self._forwarded_send(request, cors, router, home, session_id)
        self.send_session(session_id, request.body)
        return response_head(204, cors, keep_alive=request.keep_alive, length=0)

    async def _forwarded_send(
        self,
        request: Request,
        cors: list[tuple[str, str]],
        router: Router,
        home: str,
        session_id: str,
    ) -> bytes:
        await router.send(home, session_id, request.body)
        return response_head(204, cors, keep_alive=request.keep_alive, length=0)

    def send_session(self, session_id: str, body: bytes) -> None:
        """`POST E/send` for a session of this node, from a client here or forwarded: the
        body's envelopes, one a line, go to the session's handler.

        Raises:
            Gone: unknown or expired session.
            NotConnected: the session has no connection right now.
            BadRequest: the body is not UTF-8.
        """
        handler, _ = self._handler_of(session_id)
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not valid UTF-8 at byte {exc.start}") from None
        for line in text.split("\n"):
            if line.strip():
                handler.receive(line)

    # -- streams --------------------------------------------------------------------------------

    def _client(self, request: Request, endpoint_path: str) -> ClientInfo:
        query = {}
        for part in request.query.split("&"):
            key = part.partition("=")[0]
            if key and key not in query:
                query[key] = request.query_param(key) or ""
        return ClientInfo(endpoint_path, request.headers, query, None)

    def _stream(
        self, request: Request, endpoint: Endpoint, kind: str, cors: list[tuple[str, str]]
    ) -> StreamStart:
        if request.version != "1.1":
            raise BadRequest(f"the {kind} transport needs HTTP/1.1 (chunked); use longpoll")
        hello = request.query_param("hello")
        if hello is None:
            raise BadRequest(f"the {kind} transport needs the hello envelope in ?hello=")
        framing: Framing
        first = b""
        if kind == "iframe":
            target = request.query_param("origin") or ""
            if not self.policy.allows(target, request.header("host"), any_origin=False):
                raise Forbidden(f"origin {target!r} is not allowed")
            framing, heartbeat, first = IFRAME_FRAMING, IFRAME_HEARTBEAT, iframe_prelude(target)
        elif kind == "sse":
            framing, heartbeat = SSE_FRAMING, SSE_HEARTBEAT
            first = chunk(b"retry: %d\n\n" % SSE_RETRY_MS)
        else:
            framing, heartbeat = STREAM_FRAMING, STREAM_HEARTBEAT
        client = self._client(request, split_transport(request.path)[0])
        head = response_head(
            200, [("Content-Type", _CONTENT_TYPES[kind]), *_NO_BUFFERING, *cors], length=None
        )

        def make_handler(stream: HttpStream) -> EnvelopeHandler:
            return EnvelopeHandler(self.hub, endpoint, stream, client)

        return StreamStart(
            kind=kind,
            head=head + first,
            framing=framing,
            heartbeat=heartbeat,
            make_handler=make_handler,
            hello=hello,
            max_bytes=self.config.iframe_max_bytes if kind == "iframe" else None,
        )

    def raw_sse(self, request: Request, endpoint: Endpoint) -> StreamStart:
        """`GET /sse/<channel>`: a plain EventSource joins the channel; Last-Event-ID resumes."""
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.path} takes GET, not {request.method}")
        if request.version != "1.1":
            raise BadRequest("SSE needs HTTP/1.1 (chunked)")
        cors = self.cors(request, endpoint)
        last = parse_last_event_id(
            request.header("last-event-id") or request.query_param("lastEventId")
        )
        client = self._client(request, request.path)
        head = response_head(
            200, [("Content-Type", _CONTENT_TYPES["sse"]), *_NO_BUFFERING, *cors], length=None
        )

        def make_handler(stream: HttpStream) -> RawHandler:
            handler = RawHandler(self.hub, endpoint, stream, client)
            if last is not None:
                handler.since = Position(*last)
            return handler

        return StreamStart(
            kind="sse",
            head=head + chunk(b"retry: %d\n\n" % SSE_RETRY_MS),
            framing=RAW_SSE_FRAMING,
            heartbeat=SSE_HEARTBEAT,
            make_handler=make_handler,
        )

    # -- polls ------------------------------------------------------------------------------------

    def _poll(
        self, request: Request, endpoint: Endpoint, kind: str, cors: list[tuple[str, str]]
    ) -> Awaitable[bytes]:
        hello = request.query_param("hello")
        if hello is not None:
            opened = self._open_poll(request, endpoint, kind)
            assert opened.handler is not None
            opened.handler.receive(hello)
            # Answer once the welcome (or the refusal) is queued.
            return self._answer(request, opened, cors, self.config.longpoll_timeout)
        session_id = request.query_param("session") or ""
        cursor, seq = request.query_param("cursor"), request.query_param("seq")
        router = self.router
        if router is not None and (home := router.home_of(session_id)) is not None:
            return self._answer_forwarded(
                request, cors, router.poll(home, session_id, kind, cursor, seq)
            )
        transport, timeout = self._poll_here(session_id, kind, cursor, seq)
        return self._answer(request, transport, cors, timeout)

    async def _answer_forwarded(
        self, request: Request, cors: list[tuple[str, str]], batch: Awaitable[PollBatch]
    ) -> bytes:
        return self._poll_response(request, cors, await batch)

    async def poll_session(
        self, session_id: str, kind: str, cursor: str | None, seq: str | None
    ) -> PollBatch:
        """A poll forwarded by another node for a session of this one (see `_poll_here`)."""
        transport, timeout = self._poll_here(session_id, kind, cursor, seq)
        return await self._take(transport, timeout)

    def _poll_here(
        self, session_id: str, kind: str, cursor: str | None, seq: str | None
    ) -> tuple[PollTransport, float]:
        """A poll of a session of this node, from a client here or forwarded: acknowledge
        what `cursor` (frames) and `seq` (direct messages) say arrived; the transport to take
        from, and how long to wait for something (longpoll_timeout on `longpoll`).

        Raises:
            Gone: unknown or expired session.
            NotConnected: the session is not polling on `kind`.
            BadRequest: a malformed cursor.
        """
        closed = self._closed_polls.pop(session_id, None)
        if closed is not None:
            return closed, 0.0
        handler, transport = self._handler_of(session_id)
        if transport is None or transport.name != kind:
            raise NotConnected(f"session is not on the {kind} transport: send hello again")
        if cursor is not None:
            if not cursor.isdigit():
                raise BadRequest(f"invalid cursor {cursor!r}")
            transport.acknowledge(int(cursor))
        if seq is not None and seq.isdigit() and handler.session is not None:
            handler.session.ack(int(seq))
        return transport, self.config.longpoll_timeout if kind == "longpoll" else 0.0

    def _open_poll(self, request: Request, endpoint: Endpoint, kind: str) -> PollTransport:
        client = self._client(request, split_transport(request.path)[0])

        def on_close(code: int, reason: str) -> None:
            handler = transport.handler
            if handler is None:
                return
            transport.handler = None
            # A transport superseded by a resumption (4004) keeps nothing for later polls:
            # the new connection resumed with its own acknowledgements and positions.
            if handler.session is not None and code != 4004:
                session_id = handler.session.id
                self._closed_polls[session_id] = transport
                asyncio.get_running_loop().call_later(
                    self.config.poll_grace, self._closed_polls.pop, session_id, None
                )
            handler.closed(code, reason, by_client=False)

        transport = PollTransport(
            kind,
            max_frames=self.config.max_poll_frames,
            max_bytes=self.config.max_write_buffer,
            on_close=on_close,
        )
        transport.handler = EnvelopeHandler(self.hub, endpoint, transport, client)
        return transport

    def _answer(
        self,
        request: Request,
        transport: PollTransport,
        cors: list[tuple[str, str]],
        timeout: float,
    ) -> asyncio.Future[bytes]:
        # Held (at least until the next loop turn): a future the connection answers from when
        # it is resolved, with no task per poll.
        held: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._hold(transport, timeout, functools.partial(self._answered, held, request, cors))
        return held

    def _answered(
        self,
        held: asyncio.Future[bytes],
        request: Request,
        cors: list[tuple[str, str]],
        batch: PollBatch,
    ) -> None:
        if not held.done():
            held.set_result(self._poll_response(request, cors, batch))

    def _take(self, transport: PollTransport, timeout: float) -> asyncio.Future[PollBatch]:
        held: asyncio.Future[PollBatch] = asyncio.get_running_loop().create_future()
        self._hold(transport, timeout, functools.partial(_resolve, held))
        return held

    def _hold(
        self, transport: PollTransport, timeout: float, done: Callable[[PollBatch], None]
    ) -> None:
        transport.disarm()
        transport.hold(timeout, functools.partial(self._release, transport, done))

    def _release(self, transport: PollTransport, done: Callable[[PollBatch], None]) -> None:
        if transport.close_code is None:
            transport.arm(self.config.poll_grace)
        done(transport.take())

    def _poll_response(
        self, request: Request, cors: list[tuple[str, str]], batch: PollBatch
    ) -> bytes:
        version = "1.0" if request.version == "1.0" else "1.1"
        if cors or version != "1.1" or not request.keep_alive:
            headers = [
                ("Content-Type", "application/x-ndjson; charset=utf-8"),
                ("Pushwire-Cursor", str(batch.cursor)),
                *_NO_BUFFERING,
                *cors,
            ]
            head = response_head(
                200, headers, version=version, keep_alive=request.keep_alive, length=len(batch.body)
            )
            return head + batch.body
        # The common case, a same-origin keep-alive poll: a head made of constant bytes.
        return b"%sPushwire-Cursor: %d\r\nContent-Length: %d\r\n\r\n%s" % (
            _POLL_HEAD,
            batch.cursor,
            len(batch.body),
            batch.body,
        )


def error_body(exc: RemoteError | Unavailable) -> bytes:
    """A JSON error body for the HTTP transports: `{"type":"error","code":…,"message":…}`."""
    return orjson.dumps({"type": "error", "code": exc.error_code, "message": str(exc)})


def _resolve(held: asyncio.Future[PollBatch], batch: PollBatch) -> None:
    if not held.done():
        held.set_result(batch)
