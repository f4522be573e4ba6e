"""A pushwire session carried by plain HTTP requests: what the HTTP transports share.

For an endpoint E (`/pushwire`, `/echo`, `/ws/<channel>`), a client that cannot use a
WebSocket opens its session with a request to `E/<transport>?hello=…` (the pushwire.v1
`hello` envelope, URL-encoded: opening and resuming are the same for every transport), then
names it with `?session=S` on the requests that follow:

| request | transport (module) |
|---|---|
| `GET E/stream?hello=…` | one chunked NDJSON response, an envelope a line (`stream`) |
| `GET E/sse?hello=…` | one `text/event-stream` response, an envelope an event (`sse`) |
| `GET E/iframe?hello=…&origin=…` | a forever frame posting envelopes to its parent (`iframe`) |
| `GET E/longpoll?hello=…` then `?session=S&cursor=C` | held until something is queued (`poll`) |
| `GET E/polling?hello=…` then `?session=S&cursor=C` | answered at once (`poll`) |
| `POST E/send?session=S` | client envelopes, one a line (NDJSON); answers 204 (here) |

This module holds that shared part: the path suffixes, finding a session's connection by id,
the send request, and opening a streamed session. Answers carry no-buffering headers, so that
proxies pass each frame on at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from ..core import Hub
from ..core.transport import Framing, Transport
from ..endpoint import ClientInfo, Endpoint, EnvelopeHandler
from ..errors import BadRequest, Gone, NotConnected, RemoteError, Unavailable
from ..web import Request, StreamResponse

__all__ = [
    "NO_BUFFERING",
    "POLL_KINDS",
    "STREAM_KINDS",
    "TRANSPORT_SUFFIXES",
    "HttpSessions",
    "StreamWire",
    "client_info",
    "error_body",
    "split_transport",
]

STREAM_KINDS: Final = ("stream", "sse", "iframe")
POLL_KINDS: Final = ("polling", "longpoll")
TRANSPORT_SUFFIXES: Final = (*STREAM_KINDS, *POLL_KINDS, "send")
#: Headers of every streamed or polled answer: no cache, and no buffering by a proxy.
NO_BUFFERING: Final = (("Cache-Control", "no-cache, no-store"), ("X-Accel-Buffering", "no"))


def split_transport(path: str) -> tuple[str, str | None]:
    """`/pushwire/longpoll` -> (`/pushwire`, `longpoll`); paths without a suffix unchanged."""
    head, _, last = path.rpartition("/")
    if head and last in TRANSPORT_SUFFIXES:
        return head, last
    return path, None


def error_body(exc: RemoteError | Unavailable) -> bytes:
    """A JSON error body for the HTTP transports: `{"type":"error","code":…,"message":…}`."""
    return orjson.dumps({"type": "error", "code": exc.error_code, "message": str(exc)})


def client_info(request: Request, endpoint_path: str) -> ClientInfo:
    """What the connect handler will see of the client that sent `request`."""
    return ClientInfo(endpoint_path, request.headers, request.query_params(), request.remote)


def opening_hello(request: Request, kind: str) -> str:
    """The `hello` envelope of a request that opens a streamed session.

    Raises:
        BadRequest: not HTTP/1.1 (a stream is chunked), or no `?hello=`.
    """
    if request.version != "1.1":
        raise BadRequest(f"the {kind} transport needs HTTP/1.1 (chunked); use longpoll")
    hello = request.query_param("hello")
    if hello is None:
        raise BadRequest(f"the {kind} transport needs the hello envelope in ?hello=")
    return hello


@dataclass(frozen=True, slots=True)
class StreamWire:
    """How a streaming transport looks on the wire: its name, content type, framing,
    heartbeat and first bytes."""

    kind: str
    content_type: str
    framing: Framing
    heartbeat: bytes
    first: bytes = b""


def envelope_stream(
    hub: Hub,
    request: Request,
    endpoint: Endpoint,
    cors: list[tuple[str, str]],
    wire: StreamWire,
    *,
    first: bytes | None = None,
    max_bytes: int | None = None,
) -> StreamResponse:
    """`GET E/<kind>?hello=…`: a never-ending answer carrying the pushwire.v1 session that
    `hello` opens or resumes. `first` replaces the wire's first bytes when given.

    Raises:
        BadRequest: not HTTP/1.1, or no `?hello=`.
    """
    hello = opening_hello(request, wire.kind)
    client = client_info(request, split_transport(request.path)[0])

    def make_receiver(transport: Transport) -> EnvelopeHandler:
        return EnvelopeHandler(hub, endpoint, transport, client)

    return StreamResponse(
        kind=wire.kind,
        headers=[("Content-Type", wire.content_type), *NO_BUFFERING, *cors],
        framing=wire.framing,
        heartbeat=wire.heartbeat,
        make_receiver=make_receiver,
        first=wire.first if first is None else first,
        hello=hello,
        max_bytes=max_bytes,
    )


class HttpSessions:
    """Finds the connection of a session by its id, for requests that name it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def find(self, session_id: str) -> tuple[EnvelopeHandler, Transport]:
        """The session's pushwire.v1 handler and the transport it is attached to.

        Raises:
            Gone: unknown or expired session.
            NotConnected: the session has no connection right now.
        """
        session = self.hub.sessions.get(session_id)
        if session is None or session.closed:
            raise Gone(f"unknown or expired session {session_id!r}")
        transport = session.transport
        receiver = transport.receiver if transport is not None else None
        if transport is None or not isinstance(receiver, EnvelopeHandler):
            raise NotConnected(f"session {session_id!r} has no connection: reconnect it first")
        return receiver, transport

    def send(self, session_id: str, body: bytes) -> None:
        """`POST E/send` for a session of this node, from a client here or forwarded: the
        body's envelopes, one a line, go to the session's handler.

        Raises:
            Gone: unknown or expired session.
            NotConnected: the session has no connection right now.
            BadRequest: the body is not UTF-8.
        """
        handler, _ = self.find(session_id)
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not valid UTF-8 at byte {exc.start}") from None
        for line in text.split("\n"):
            if line.strip():
                handler.receive(line)
