"""One small blocking client per door of a pushwire server, each with the same shape, written
from docs/protocol.md: what tests/integration/test_auth_matrix.py drives at every door, and
what any test may share.

- pushwire.v1 doors: `open_envelopes(door, target, hello)` gives an `Envelopes` connection
  (`send` an envelope, `recv` the next one) over `websocket`, `sse`, `stream`, `iframe`,
  `longpoll`, `polling`, `tcp`, or `ws-v1` (a WebSocket at `/ws/<channel>` that offers
  pushwire.v1). The end of a connection reads as a `close` envelope on every one of them:
  the HTTP transports and TCP send one, a WebSocket Close frame is turned into one.
- raw `/ws/<channel>`: `RawWebSocket`; raw `/sse/<channel>`: `RawSse`.
- the HTTP API: `api_call`.

Every read is bounded by `WAIT` seconds (`TimeoutError` past it); nothing here sleeps to
synchronise, except the `polling` transport's own pause between two empty polls.
The iframe is read as a plain HTTP client reads it: each `<script>p(envelope)</script>` chunk
holds one envelope, which is all a browser's frame would post to its parent.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.helpers import PUSHWIRE_V1
from tests.wire_clients import TcpClient

__all__ = [
    "ENVELOPE_DOORS",
    "WAIT",
    "Envelopes",
    "RawSse",
    "RawWebSocket",
    "SseEvent",
    "Target",
    "api_call",
    "open_envelopes",
]

#: Seconds any one read may take.
WAIT: Final = 5.0
#: The pushwire.v1 doors `open_envelopes` knows.
ENVELOPE_DOORS: Final = (
    "websocket",
    "sse",
    "stream",
    "iframe",
    "longpoll",
    "polling",
    "tcp",
    "ws-v1",
)
#: The `polling` transport's pause after an empty poll (the clients' interval, shortened).
POLL_INTERVAL: Final = 0.02
#: The parent page's origin an iframe is opened for: a loopback one, always allowed.
IFRAME_ORIGIN: Final = "http://localhost:1"


class Target(Protocol):
    """Where a server listens (`tests.servers.ServerProcess`, or an in-process server)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def tcp_port(self) -> int | None: ...


Envelope = dict[str, Any]


def _close_envelope(code: int | None, reason: str) -> Envelope:
    return {"type": "close", "code": code, "reason": reason}


class Envelopes:
    """A pushwire.v1 connection at one door: `send` envelopes, `recv` what the server sends
    (heartbeats left out); its end is a `close` envelope, then `EOFError`."""

    door: str = ""

    def send(self, envelope: Envelope) -> None:
        raise NotImplementedError

    def recv(self, timeout: float = WAIT) -> Envelope:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Envelopes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- WebSocket ------------------------------------------------------------------------------


def _websocket(url: str, headers: Mapping[str, str], *, subprotocols: bool) -> ClientConnection:
    """A connected WebSocket client (closed by its owner), offering pushwire.v1 or nothing."""
    # Entered as the context manager websockets wants it used as; `close()` ends it.
    return ws_connect(
        url,
        subprotocols=PUSHWIRE_V1 if subprotocols else None,
        additional_headers=dict(headers),
        open_timeout=WAIT,
    ).__enter__()


class _WebSocketEnvelopes(Envelopes):
    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.door = "websocket"
        self.ws = _websocket(url, headers, subprotocols=True)
        self.ended = False

    def send(self, envelope: Envelope) -> None:
        # When the server closed first, the envelope is lost and `recv` reads the close.
        with contextlib.suppress(ConnectionClosed):
            self.ws.send(json.dumps(envelope))

    def recv(self, timeout: float = WAIT) -> Envelope:
        if self.ended:
            raise EOFError("the connection is closed")
        try:
            got: Envelope = json.loads(self.ws.recv(timeout))
        except ConnectionClosed as closed:
            self.ended = True
            if closed.rcvd is None:
                return _close_envelope(None, "no Close frame")
            return _close_envelope(closed.rcvd.code, closed.rcvd.reason)
        return got

    def close(self) -> None:
        self.ws.close()


# -- the HTTP transports ----------------------------------------------------------------------


class _ChunkedResponse:
    """An HTTP/1.1 response read by hand from a socket, chunk by chunk, within deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.deadline = time.monotonic() + WAIT
        head = self._until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        self.ended = False

    def _recv(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing arrived in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("nothing arrived in time") from None
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._recv()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def body(self) -> bytes:
        """The whole body of a response that is not a stream."""
        if "content-length" in self.headers:
            length = int(self.headers["content-length"])
            while len(self.buffer) < length:
                self._recv()
            return self.buffer[:length]
        return b"".join(iter(self.chunk, b""))

    def chunk(self, timeout: float = WAIT) -> bytes:
        """The next chunk's data; b"" once the body ended. A chunk is taken whole or not at
        all: a read that times out loses nothing."""
        if self.ended:
            return b""
        self.deadline = time.monotonic() + timeout
        while True:
            head, found, rest = self.buffer.partition(b"\r\n")
            if found:
                size = int(head.split(b";")[0], 16)
                if size == 0:
                    self.ended = True
                    return b""
                if len(rest) >= size + 2:
                    self.buffer = rest[size + 2 :]
                    return rest[:size]
            self._recv()


def _request(
    target: Target,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> _ChunkedResponse:
    sock = socket.create_connection((target.host, target.port), timeout=WAIT)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: text/plain", f"Content-Length: {len(body)}"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    return _ChunkedResponse(sock)


def _session_header(welcome: Envelope | None) -> dict[str, str]:
    if welcome is None:
        return {}
    return {"Pushwire-Session": f"{welcome['session']} {welcome['resume']}"}


def _post_send(target: Target, path: str, welcome: Envelope | None, envelope: Envelope) -> None:
    """`POST E/send`: one envelope for the session `welcome` opened (204 expected)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=WAIT)
    try:
        conn.request("POST", f"{path}/send", json.dumps(envelope), _session_header(welcome))
        response = conn.getresponse()
        answer = response.read()
        assert response.status == 204, (response.status, answer)
    finally:
        conn.close()


def _stream_envelopes(kind: str, data: bytes) -> list[Envelope]:
    if kind == "stream":
        lines = [line for line in data.split(b"\n") if line.strip()]
    elif kind == "sse":
        lines = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
    else:  # iframe: what each <script>p(...)</script> would post to the parent page
        lines = [part.split(b")</script>")[0] for part in data.split(b"<script>p(")[1:]]
    return [json.loads(line) for line in lines]


class _StreamEnvelopes(Envelopes):
    """`stream` (POST, NDJSON), `sse` (GET ?hello=, events) or `iframe` (GET ?hello=&origin=,
    scripts): one never-ending response down, `POST E/send` up."""

    def __init__(
        self, target: Target, kind: str, path: str, hello: Envelope, headers: Mapping[str, str]
    ) -> None:
        self.door, self.target, self.path = kind, target, path
        text = json.dumps(hello)
        if kind == "stream":
            self.response = _request(target, "POST", f"{path}/stream", headers, text.encode())
        else:
            query = "hello=" + urllib.parse.quote(text)
            if kind == "iframe":
                query += "&origin=" + urllib.parse.quote(IFRAME_ORIGIN)
            self.response = _request(target, "GET", f"{path}/{kind}?{query}", headers)
        assert self.response.status == 200, self.response.status
        self.backlog: list[Envelope] = []
        self.welcome: Envelope | None = None

    def send(self, envelope: Envelope) -> None:
        _post_send(self.target, self.path, self.welcome, envelope)

    def recv(self, timeout: float = WAIT) -> Envelope:
        deadline = time.monotonic() + timeout
        while not self.backlog:
            data = self.response.chunk(max(deadline - time.monotonic(), 0.001))
            if not data and self.response.ended:
                raise EOFError("the stream ended")
            self.backlog = _stream_envelopes(self.door, data)
        envelope = self.backlog.pop(0)
        if envelope["type"] == "welcome":
            self.welcome = envelope
        return envelope

    def close(self) -> None:
        self.response.sock.close()


class _PollEnvelopes(Envelopes):
    """`longpoll` or `polling`: opened by `POST E/<kind>` (the hello as its body), then
    polled with the cursor and the `Pushwire-Session` header on one keep-alive connection."""

    def __init__(
        self, target: Target, kind: str, path: str, hello: Envelope, headers: Mapping[str, str]
    ) -> None:
        self.door, self.target, self.path = kind, target, path
        self.conn = http.client.HTTPConnection(target.host, target.port, timeout=WAIT)
        self.cursor = 0
        self.welcome: Envelope | None = None
        self.ended = False
        body = json.dumps(hello).encode()
        self.backlog = self._request("POST", f"{path}/{kind}", body, dict(headers))

    def _request(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> list[Envelope]:
        self.conn.request(method, target, body=body, headers=headers)
        response = self.conn.getresponse()
        answer = response.read()
        assert response.status == 200, (response.status, answer)
        self.cursor = int(response.headers["Pushwire-Cursor"])
        return [json.loads(line) for line in answer.splitlines() if line]

    def send(self, envelope: Envelope) -> None:
        _post_send(self.target, self.path, self.welcome, envelope)

    def recv(self, timeout: float = WAIT) -> Envelope:
        deadline = time.monotonic() + timeout
        while not self.backlog:
            if self.ended:
                raise EOFError("the session's connection ended")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("nothing arrived in time")
            self.conn.timeout = left
            if self.conn.sock is not None:
                self.conn.sock.settimeout(left)
            target = f"{self.path}/{self.door}?cursor={self.cursor}"
            self.backlog = self._request("GET", target, None, _session_header(self.welcome))
            if not self.backlog and self.door == "polling":
                time.sleep(POLL_INTERVAL)  # ajax polling asks again after its interval
        envelope = self.backlog.pop(0)
        if envelope["type"] == "welcome":
            self.welcome = envelope
        elif envelope["type"] == "close":
            self.ended = True
        return envelope

    def close(self) -> None:
        self.conn.close()


# -- TCP --------------------------------------------------------------------------------------


class _TcpEnvelopes(TcpClient, Envelopes):
    """The TCP port's length-prefixed frames (tests.wire_clients.TcpClient), pings answered."""

    def __init__(self, target: Target) -> None:  # TcpClient's takes a server process
        assert target.tcp_port is not None, "the server has no TCP port"
        self.door = "tcp"
        self.sock = socket.create_connection((target.host, target.tcp_port), timeout=WAIT)
        self.buffer = b""

    def recv(self, timeout: float = WAIT) -> Envelope:
        self.sock.settimeout(timeout)
        while True:
            try:
                envelope = TcpClient.recv(self)
            except TimeoutError:
                raise TimeoutError("nothing arrived in time") from None
            if envelope["type"] != "ping":
                return envelope
            self.send({"type": "pong"})


# -- the door -----------------------------------------------------------------------------------


def open_envelopes(
    door: str,
    target: Target,
    hello: Envelope,
    *,
    headers: Mapping[str, str] | None = None,
    channel: str | None = None,
) -> Envelopes:
    """A pushwire.v1 connection at `door` (one of `ENVELOPE_DOORS`) of `/pushwire`, `hello`
    sent (its answer is the first `recv`). `ws-v1` is the WebSocket at `/ws/<channel>`.
    `headers` go with the opening request (the TCP port has none)."""
    headers = headers or {}
    hello = {"type": "hello", **hello}
    client: Envelopes
    if door in ("websocket", "ws-v1"):
        path = "/pushwire" if door == "websocket" else f"/ws/{channel}"
        client = _WebSocketEnvelopes(f"ws://{target.host}:{target.port}{path}", headers)
        client.door = door
        client.send(hello)
    elif door in ("sse", "stream", "iframe"):
        client = _StreamEnvelopes(target, door, "/pushwire", hello, headers)
    elif door in ("longpoll", "polling"):
        client = _PollEnvelopes(target, door, "/pushwire", hello, headers)
    elif door == "tcp":
        client = _TcpEnvelopes(target)
        client.send(hello)
    else:
        raise ValueError(f"no pushwire.v1 door {door!r}")
    return client


# -- raw /ws/<channel> ----------------------------------------------------------------------------


class RawWebSocket:
    """A plain WebSocket at `/ws/<channel>` (no subprotocol: raw mode)."""

    def __init__(
        self,
        target: Target,
        channel: str,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        search = "?" + urllib.parse.urlencode(query) if query else ""
        url = f"ws://{target.host}:{target.port}/ws/{channel}{search}"
        self.ws = _websocket(url, headers or {}, subprotocols=False)
        self.closed: tuple[int | None, str] | None = None

    def opened(self) -> bool:
        """Whether the server let the connection in: a Ping is answered after the server
        opened its session (and joined its channel), or the connection is closed."""
        try:
            pong = self.ws.ping(ack_on_close=True)
        except ConnectionClosed:
            return False
        assert pong.wait(WAIT), "no pong and no close in time"
        return self.ws.protocol.state.name == "OPEN"

    def recv(self, timeout: float = WAIT) -> str | bytes | tuple[int | None, str]:
        """The next message, or the close code and reason once the server closed."""
        if self.closed is not None:
            return self.closed
        try:
            return self.ws.recv(timeout)
        except ConnectionClosed as closed:
            self.closed = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")
            return self.closed

    def send(self, data: str) -> None:
        self.ws.send(data)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- raw /sse/<channel> -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event of a raw SSE stream: its data (base64-decoded for `binary`)."""

    data: str | bytes
    id: str | None = None
    event: str | None = None


@dataclass
class RawSse:
    """`GET /sse/<channel>` as a plain EventSource sends it: `status` and, when refused, the
    `refusal` (the body's line); else `events()`."""

    target: Target
    channel: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 0
    refusal: str = ""

    def __post_init__(self) -> None:
        search = "?" + urllib.parse.urlencode(self.query) if self.query else ""
        self.response = _request(self.target, "GET", f"/sse/{self.channel}{search}", self.headers)
        self.status = self.response.status
        if self.status != 200:
            self.refusal = self.response.body().decode()
            self.response.sock.close()
        self._pending = b""

    def next_event(self, timeout: float = WAIT) -> SseEvent:
        """The next event (comments and `retry:` left out)."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self._pending:
            chunk = self.response.chunk(max(deadline - time.monotonic(), 0.001))
            if not chunk and self.response.ended:
                raise EOFError("the stream ended")
            self._pending += chunk
        block, _, self._pending = self._pending.partition(b"\n\n")
        fields: dict[str, list[str]] = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(": ")
            fields.setdefault(name, []).append(value)
        if "data" not in fields:
            return self.next_event(max(deadline - time.monotonic(), 0.001))
        text = "\n".join(fields["data"])
        kind = fields.get("event", [None])[0]
        data: str | bytes = base64.b64decode(text) if kind == "binary" else text
        return SseEvent(data, fields.get("id", [None])[0], kind)

    def events(self, timeout: float = WAIT) -> Iterator[SseEvent]:
        while True:
            yield self.next_event(timeout)

    def close(self) -> None:
        self.response.sock.close()

    def __enter__(self) -> RawSse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the HTTP API ---------------------------------------------------------------------------------


def api_call(
    target: Target,
    method: str,
    path: str,
    body: str | None = None,
    key: str | None = None,
) -> tuple[int, Any]:
    """One call of the HTTP API, `Authorization: Bearer <key>` when a key is given: the
    status and the JSON answer (the text of a refusal, without its newline)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=WAIT)
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    if response.status == 200:
        return response.status, json.loads(raw)
    return response.status, raw.decode().rstrip("\n")
