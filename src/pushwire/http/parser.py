"""HTTP/1.x request parsing: bytes in, complete `Request` events out (httptools underneath).

Sans-I/O: `RequestParser` owns no socket and reads no clock. The server feeds it what the
socket delivered and acts on the requests it returns. Bounds: `max_header_bytes` (431) and
`max_body_bytes` (413) are checked here as the bytes arrive, so an oversized request is refused
before it is buffered whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

import httptools

from ..errors import BadRequest, BodyTooLarge, HeadersTooLarge

__all__ = ["Request", "RequestParser"]


@dataclass(slots=True)
class Request:
    """One complete HTTP request.

    `headers` keeps the order and repetitions of the wire, names in lower case.
    `upgrade_data` holds the bytes that followed an Upgrade request (already the new protocol).
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
            if unquote(key) == name:
                return unquote(value.replace("+", " "))
        return None


@dataclass(slots=True)
class _Head:
    target: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    size: int = 0
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False


class RequestParser:
    """Incremental HTTP/1.x request parser with size bounds.

    Call `receive_data(data)`, then take `events_received()`. A request with an Upgrade
    header ends the HTTP stream: its `upgrade_data` holds what followed, and this parser
    must not be fed again.

    Raises (from `receive_data`):
        HeadersTooLarge: request line plus headers over `max_header_bytes`.
        BodyTooLarge: declared or received body over `max_body_bytes`.
        BadRequest: anything llhttp rejects.
    """

    def __init__(self, max_header_bytes: int, max_body_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._head: _Head | None = None
        self._head_bytes = 0
        self._events: list[Request] = []
        self.upgraded = False
        #: A request without keep-alive ended the stream: later bytes are ignored.
        self.finished = False

    @property
    def in_request(self) -> bool:
        """True between a request's first byte and its last."""
        return self._head is not None

    @property
    def in_head(self) -> bool:
        """True while a request head is incomplete (the header timeout applies)."""
        return self._head is not None and not self._head.complete

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket."""
        if self.finished:
            return
        if self.in_head or self._head is None:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._finish_upgrade(data[offset:])
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, BadRequest | HeadersTooLarge | BodyTooLarge):
                raise cause from None
            raise BadRequest(f"malformed request: {exc}") from exc
        except httptools.HttpParserError as exc:
            if self._ended():
                return  # llhttp refuses data after a request that closes the connection
            raise BadRequest(f"malformed request: {exc}") from exc
        if self.in_head and self._head_bytes > self.max_header_bytes:
            raise HeadersTooLarge(f"request head over size limit (> {self.max_header_bytes} bytes)")

    def _ended(self) -> bool:
        # A method, not the attribute: callbacks set it during feed_data.
        return self.finished

    def events_received(self) -> list[Request]:
        """Requests completed since the last call, in order."""
        events, self._events = self._events, []
        return events

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._head = _Head()

    def on_url(self, url: bytes) -> None:
        assert self._head is not None
        self._head.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._head is not None
        self._head.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        self._head.size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        head = self._head
        assert head is not None
        head.complete = True
        method = self._parser.get_method()
        # "GET /path HTTP/1.1\r\n" + headers + "\r\n", counted from what was parsed.
        size = len(method) + len(head.target) + 12 + head.size + 2
        if size > self.max_header_bytes:
            raise HeadersTooLarge(
                f"request head over size limit ({size} > {self.max_header_bytes} bytes)"
            )
        for key, value in head.headers:
            if key == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise BadRequest(f"invalid content-length {value!r}") from None
                if length > self.max_body_bytes:
                    raise BodyTooLarge(
                        f"body over size limit ({length} > {self.max_body_bytes} bytes)"
                    )

    def on_body(self, body: bytes) -> None:
        assert self._head is not None
        self._head.body += body
        if len(self._head.body) > self.max_body_bytes:
            raise BodyTooLarge(f"body over size limit (> {self.max_body_bytes} bytes)")

    def on_message_complete(self) -> None:
        if self._parser.should_upgrade():
            return  # finished in _finish_upgrade, with the bytes that follow
        request = self._build(upgrade=False)
        self.finished = not request.keep_alive
        self._events.append(request)

    def _finish_upgrade(self, rest: bytes) -> None:
        self.upgraded = True
        request = self._build(upgrade=True)
        request.upgrade_data = rest
        self._events.append(request)

    def _build(self, upgrade: bool) -> Request:
        head = self._head
        assert head is not None
        self._head = None
        self._head_bytes = 0
        target = head.target.decode("latin-1")
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
        return Request(
            method=self._parser.get_method().decode("ascii"),
            path=unquote(path),
            query=query,
            version=self._parser.get_http_version(),
            headers=head.headers,
            keep_alive=self._parser.should_keep_alive(),
            body=bytes(head.body),
            upgrade=upgrade,
            raw_target=target,
        )
