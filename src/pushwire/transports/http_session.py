"""A pushwire session carried by plain HTTP requests: what the HTTP transports share.

For an endpoint E (`/pushwire`, `/echo`, `/ws/<channel>`), a client that cannot use a
WebSocket opens its session with a request to `E/<transport>` carrying the pushwire.v1
`hello` envelope (opening and resuming are the same for every transport): as the body of a
`POST` where the browser can send one (fetch, XHR), in `?hello=` where it cannot (an
EventSource, an iframe). The requests that follow name the session, and prove the right to
it, in a header: `Pushwire-Session: <id> <resume secret>`, never in the URL, which proxies
and access logs keep.

| request | transport (module) |
|---|---|
| `POST E/stream` (body: hello) | one chunked NDJSON response, an envelope a line (`stream`) |
| `GET E/sse?hello=…` | one `text/event-stream` response, an envelope an event (`sse`) |
| `GET E/iframe?hello=…&origin=…` | a forever frame posting to its parent (`iframe`) |
| `POST E/longpoll` (body: hello), then `GET E/longpoll?cursor=C` | held till a frame (`poll`) |
| `POST E/polling` (body: hello), then `GET E/polling?cursor=C` | answered at once (`poll`) |
| `POST E/send` | client envelopes, one a line (NDJSON); answers 204 (here) |

Every request after the opening one carries the `Pushwire-Session` header.
(`GET E/<kind>?hello=…` opens every kind, and `POST E/sse` opens an SSE stream, for clients
that cannot send a body, or can.)

This module holds that shared part: the path suffixes, finding a session's connection by id
and secret, the send request, and opening a streamed session. Answers carry no-buffering
headers, so that proxies pass each frame on at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from ..core import Hub, Session
from ..core.transport import Framing, Transport
from ..endpoint import ClientInfo, Endpoint, EnvelopeHandler
from ..errors import (
    BadRequest,
    Forbidden,
    Gone,
    NotConnected,
    RemoteError,
    Unavailable,
    backoff_seconds,
)
from ..parsing import quoted
from ..web import Request, StreamResponse

__all__ = [
    "NO_BUFFERING",
    "POLL_KINDS",
    "POST_OPENED",
    "SESSION_HEADER",
    "STREAM_KINDS",
    "TRANSPORT_SUFFIXES",
    "WRONG_SECRET",
    "HttpSessions",
    "StreamWire",
    "client_info",
    "error_body",
    "request_hello",
    "session_claim",
    "split_transport",
]

STREAM_KINDS: Final = ("stream", "sse", "iframe")
POLL_KINDS: Final = ("polling", "longpoll")
TRANSPORT_SUFFIXES: Final = (*STREAM_KINDS, *POLL_KINDS, "send")
#: The transports a `POST E/<kind>` opens, the hello as its body (not the iframe: a frame's
#: document is loaded from its URL).
POST_OPENED: Final = ("stream", "sse", "longpoll", "polling")
#: The header naming the session of a poll or send (lower case, as `Request.header` reads).
SESSION_HEADER: Final = "pushwire-session"
#: A poll or send naming a session without its resume secret: 403 `forbidden`.
WRONG_SECRET: Final = "session secret missing or wrong"
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
    error: dict[str, object] = {"type": "error", "code": exc.error_code, "message": str(exc)}
    wait = backoff_seconds(exc)
    if wait is not None:
        error["retry_after"] = wait
    return orjson.dumps(error)


def client_info(request: Request, endpoint_path: str) -> ClientInfo:
    """What the connect handler will see of the client that sent `request` (the app
    counted its handshake: `App.admit`)."""
    return ClientInfo(
        endpoint_path,
        request.headers,
        request.query_params(),
        request.remote,
        address=request.address,
        handshaken=True,
    )


def request_hello(request: Request) -> str | None:
    """The `hello` envelope a request opens a session with: the body of a POST, `?hello=`
    of a GET; None when a GET has none (a poll of an open session).

    Raises:
        BadRequest: a POST whose body is empty or not UTF-8.
    """
    if request.method != "POST":
        return request.query_param("hello")
    try:
        hello = request.body.decode()
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the hello envelope is not valid UTF-8 at byte {exc.start}") from None
    if not hello.strip():
        raise BadRequest("a POST opening a session needs the hello envelope as its body")
    return hello


def opening_hello(request: Request, kind: str) -> str:
    """The `hello` envelope of a request that opens a streamed session.

    Raises:
        BadRequest: not HTTP/1.1 (a stream is chunked), or no hello.
    """
    if request.version != "1.1":
        raise BadRequest(f"the {kind} transport needs HTTP/1.1 (chunked); use longpoll")
    hello = request_hello(request)
    if hello is None:
        raise BadRequest(f"the {kind} transport needs the hello envelope (POST body or ?hello=)")
    return hello


def session_claim(request: Request) -> tuple[str, str | None]:
    """The session a poll or send names, and the resume secret it shows: from the
    `Pushwire-Session: <id> <secret>` header. A request naming its session in the URL alone
    (`?session=`, as clients did before the header) shows no secret and is refused."""
    value = request.header(SESSION_HEADER)
    if value is None:
        return request.query_param("session") or "", None
    session_id, _, secret = value.strip().partition(" ")
    return session_id, secret.strip() or None


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
    """`POST E/<kind>` or `GET E/<kind>?hello=…`: a never-ending answer carrying the
    pushwire.v1 session that `hello` opens or resumes. `first` replaces the wire's first
    bytes when given.

    Raises:
        BadRequest: not HTTP/1.1, or no hello.
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

    @staticmethod
    def check(session: Session | None, session_id: str, secret: str | None, endpoint: str) -> None:
        """Whether a request at `endpoint` showing `secret` may use `session`.

        Raises:
            Gone: no such session here, or another endpoint's (told apart from none: an
                /echo session is unknown at /pushwire).
            Forbidden: the secret is missing or wrong (nothing about the session changes).
        """
        if session is None or session.endpoint != endpoint:
            raise Gone(f"unknown or expired session {quoted(session_id)}")
        if not session.proves(secret):
            raise Forbidden(WRONG_SECRET)

    def find(
        self, session_id: str, secret: str | None, endpoint: str
    ) -> tuple[EnvelopeHandler, Transport]:
        """The session's pushwire.v1 handler and the transport it is attached to.

        Raises:
            Gone: unknown or expired session, or one opened at another endpoint.
            Forbidden: the resume secret is missing or wrong.
            NotConnected: the session has no connection right now.
        """
        session = self.hub.sessions.get(session_id)
        if session is not None and session.closed:
            session = None
        self.check(session, session_id, secret, endpoint)
        assert session is not None
        transport = session.transport
        receiver = transport.receiver if transport is not None else None
        if transport is None or not isinstance(receiver, EnvelopeHandler):
            raise NotConnected(
                f"session {quoted(session_id)} has no connection: reconnect it first"
            )
        return receiver, transport

    def send(self, session_id: str, secret: str | None, endpoint: str, body: bytes) -> None:
        """`POST E/send` for a session of this node, from a client here or forwarded: the
        body's envelopes, one a line, go to the session's handler.

        Raises:
            Gone: unknown or expired session, or one opened at another endpoint.
            Forbidden: the resume secret is missing or wrong.
            NotConnected: the session has no connection right now.
            BadRequest: the body is not UTF-8.
        """
        handler, _ = self.find(session_id, secret, endpoint)
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not valid UTF-8 at byte {exc.start}") from None
        for line in text.split("\n"):
            if line.strip():
                handler.receive(line)
