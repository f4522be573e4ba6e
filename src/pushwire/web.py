"""What a front door and the app hand each other: requests, answers, and the app interface.

pushwire has one core and front doors over it: the native server (`pushwire.server`:
httptools on asyncio, the fast path), and any other server that can turn its wire into the
values below (an ASGI adapter is the second door the design plans). A front door parses what
arrives into a `Request` and calls the app (`Application`); the app answers with:

- a `Response`: a whole answer;
- a `StreamResponse`: an answer that never ends (the stream, sse and iframe transports): its
  head, a first piece, then every frame the client's transport writes;
- a `WebSocketAccept` for an upgrade it takes: the subprotocol, and what receives the
  client's messages once the connection is open.

Nothing here owns a socket. Frames are the transport's own (an SSE event, an NDJSON line):
a door that speaks HTTP/1.1 wraps them in chunks itself (`pushwire.http11.chunk`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from .core.budget import BudgetConsumer
from .core.transport import Framing, Receiver, Transport
from .errors import PushwireError
from .http11 import response_head

__all__ = [
    "Answer",
    "Application",
    "Request",
    "Response",
    "ServerState",
    "StreamResponse",
    "WebSocketAccept",
]


@dataclass(slots=True)
class Request:
    """One complete HTTP request.

    `headers` keeps the order and repetitions of the wire, names in lower case.
    `upgrade_data` holds the bytes that followed an Upgrade request (already the new protocol).
    `remote` is the peer's address as the door saw it (`host:port`), when it knows it;
    behind a trusted proxy (`trust_proxy`), the client's address its `X-Forwarded-For` names.
    `address` is the client's IP address alone (the per-address limits count by it).
    """

    method: str
    path: str
    query: str
    version: str
    headers: list[tuple[str, str]]
    keep_alive: bool
    body: bytes = b""
    upgrade: bool = False
    upgrade_data: bytes = b""
    raw_target: str = ""
    remote: str | None = None
    address: str | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (lower case), or `default`."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name`, in wire order."""
        return [value for key, value in self.headers if key == name]

    def query_param(self, name: str) -> str | None:
        """The first value of query parameter `name`, percent-decoded."""
        for part in self.query.split("&"):
            key, _, value = part.partition("=")
            if key == name or ("%" in key and unquote(key) == name):
                if "%" in value or "+" in value:
                    return unquote(value.replace("+", " "))
                return value  # nothing to decode (the common case: skip unquote's cost)
        return None

    def query_params(self) -> dict[str, str]:
        """Every query parameter's first value, percent-decoded. One pass over the query
        (asking `query_param` for each name took a second for a 16 KiB query of 3,000 names)."""
        query = self.query
        if "&" not in query and "%" not in query and "+" not in query:
            key, _, value = query.partition("=")  # (one name, nothing to decode: a subscriber's)
            return {key: value} if key else {}
        params: dict[str, str] = {}
        for part in self.query.split("&"):
            key, _, value = part.partition("=")
            if "%" in key:
                key = unquote(key)
            if key and key not in params:
                params[key] = (
                    unquote(value.replace("+", " ")) if "%" in value or "+" in value else value
                )
        return params


class Response:
    """A whole answer: status, headers (a `Content-Type` first unless None) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes | str = b"",
        *,
        content_type: str | None = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = [("Content-Type", content_type), *headers] if content_type else [*headers]

    def encode(self, *, version: str, keep_alive: bool, head_only: bool) -> bytes:
        """The answer as HTTP/`version` bytes (`head_only`: for HEAD, without the body)."""
        head = response_head(
            self.status, self.headers, version=version, keep_alive=keep_alive, length=len(self.body)
        )
        return head if head_only else head + self.body


class StreamResponse:
    """An answer that never ends, carrying one client's transport.

    The door sends `status` and `headers`, then `first`; then it makes the client's transport
    (named `kind`, writing frames of `framing`), gives it to `make_receiver`, and opens the
    receiver; `hello`, when set, is the client's opening envelope (from the URL). While nothing
    is written, `heartbeat` goes out every `heartbeat_interval`. After `max_bytes` (when set)
    the stream closes with 4000: the client opens a new one and resumes.
    """

    __slots__ = (
        "first",
        "framing",
        "headers",
        "heartbeat",
        "hello",
        "kind",
        "make_receiver",
        "max_bytes",
        "status",
    )

    def __init__(
        self,
        *,
        kind: str,
        headers: Sequence[tuple[str, str]],
        framing: Framing,
        heartbeat: bytes,
        make_receiver: Callable[[Transport], Receiver],
        first: bytes = b"",
        hello: str | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.status = 200
        self.kind = kind
        self.headers = list(headers)
        self.framing = framing
        self.heartbeat = heartbeat
        self.make_receiver = make_receiver
        self.first = first
        self.hello = hello
        self.max_bytes = max_bytes


@dataclass(slots=True)
class WebSocketAccept:
    """An upgrade the app takes: the subprotocol chosen (or None), whether messages travel
    as pushwire.v1 envelopes (`envelope`) or raw, and what receives the client's messages.
    (Not frozen: one is made per handshake, and a frozen dataclass writes each field through
    `object.__setattr__`.)"""

    subprotocol: str | None
    envelope: bool
    make_receiver: Callable[[Transport], Receiver]
    #: The client's `Sec-WebSocket-Key`, as the app checked it ("": the door reads it).
    key: str = ""


#: What the app answers a plain HTTP request with (an awaitable when it must wait: a
#: long-poll held until something is queued, a publish waiting for the broker, a stream
#: opened once the client's credentials are checked).
Answer = Response | StreamResponse | Awaitable[Response] | Awaitable[Response | StreamResponse]


class ServerState(Protocol):
    """What a door tells the app about itself (the app's counters)."""

    @property
    def accepted(self) -> int:
        """Connections accepted since the door opened."""

    @property
    def open_connections(self) -> int:
        """Connections open now."""

    def consumers(self) -> Iterable[BudgetConsumer]:
        """The open connections, for the memory budget (what each holds buffered)."""


class Application(Protocol):
    """What the front doors ask of the app. Every method is called on the event loop; each
    that refuses raises the `PushwireError` whose status or close code the client gets."""

    def handle_http(self, request: Request) -> Answer:
        """Answer a request that is not a WebSocket upgrade."""

    def error_response(self, request: Request, exc: PushwireError) -> Response:
        """The answer to a request that failed with `exc`."""

    def websocket(self, request: Request) -> WebSocketAccept:
        """Take a WebSocket upgrade (checked as RFC 6455 4.2.1 asks), or refuse it."""

    def tcp_receiver(self, transport: Transport, remote: str | None) -> Receiver:
        """What receives the envelopes of a client on the raw TCP port."""

    def flash_policy(self, port: int) -> bytes:
        """The Flash cross-domain policy file for the TCP port `port`."""

    def attach_server(self, state: ServerState) -> None:
        """The door that serves this app (for its counters and the memory budget)."""

    def stopping(self) -> None:
        """The door is shutting down: refuse new work, answer health checks with 503."""
