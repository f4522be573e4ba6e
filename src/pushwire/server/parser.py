"""HTTP/1.x request parsing: bytes in, complete `Request` events out (httptools underneath).

Sans-I/O: `RequestParser` owns no socket and reads no clock. The server feeds it what the
socket delivered and acts on the requests it returns. Bounds: `max_header_bytes` (431) and
`max_body_bytes` (413) are checked here as the bytes arrive, so an oversized request is refused
before it is buffered whole.

A whole head fed in one piece between requests (a WebSocket handshake's, most polls') is
first offered to `head.parse_head`, which takes the common forms without llhttp, several
times faster; whatever it is not sure of, llhttp parses from the start.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote

import httptools

from ..errors import BadRequest, BodyTooLarge, HeadersTooLarge, RemoteError, VersionNotSupported
from ..parsing import decimal
from ..web import Request
from .head import parse_head

__all__ = ["RequestParser"]


#: Where the parser stands (`RequestParser._state`): between requests, in a request's head,
#: in its body (the head is complete).
_IDLE: Final = 0
_HEAD: Final = 1
_BODY: Final = 2

_END_OF_HEAD: Final = b"\r\n\r\n"
#: The common methods' names, made once.
_METHODS: Final = {m.encode(): m for m in ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE")}


class RequestParser:
    """Incremental HTTP/1.x request parser with size bounds.

    Call `receive_data(data)`, then take `events_received()`. A request with an Upgrade
    header ends the HTTP stream: its `upgrade_data` holds what followed, including bytes fed
    after it (before the server switched protocols).

    Bounds are counted in bytes on the wire, whatever the feeds look like: the head (request
    line, headers, final CRLF, and any empty lines before it) up to `max_header_bytes`; the
    body up to `max_body_bytes`, and a chunked body's framing and trailers within
    `max_body_bytes + max_header_bytes`.

    Raises (from `receive_data`):
        HeadersTooLarge: request head over `max_header_bytes`.
        BodyTooLarge: declared or received body over `max_body_bytes`.
        BadRequest: anything llhttp rejects; a request line without a version (HTTP/0.9),
            more than one Host header (RFC 9112 3.2), a Content-Length that is not a number.
        VersionNotSupported: an HTTP version other than 1.0 and 1.1.
    """

    # Slots: a connection holds its parser while it is open (a dict was ~230 bytes).
    __slots__ = (
        "_body",
        "_body_left",
        "_chunked_bytes",
        "_events",
        "_head_bytes",
        "_headers",
        "_parser",
        "_state",
        "_tail",
        "_target",
        "_upgrade_request",
        "finished",
        "in_head",
        "in_request",
        "max_body_bytes",
        "max_header_bytes",
        "upgraded",
    )

    def __init__(self, max_header_bytes: int, max_body_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        # llhttp, made when bytes come (`rest` lets it go between requests).
        self._parser: httptools.HttpRequestParser | None = None
        # The request being received (kept on the parser: an object per request was a
        # tenth of parsing a WebSocket handshake).
        self._state = _IDLE
        #: True between a request's first byte and its last.
        self.in_request = False
        #: True while a request head is incomplete (the header timeout applies).
        self.in_head = False
        self._target = b""
        self._headers: list[tuple[str, str]] = []
        self._body: bytearray | None = None
        # Wire bytes of the head being received, since the end of the previous request.
        self._head_bytes = 0
        # Content-Length bytes still to come; None: a chunked body.
        self._body_left: int | None = 0
        # Wire bytes of the chunked body being received (framing and trailers included).
        self._chunked_bytes = 0
        # The last bytes (< 4) fed since the last CRLFCRLF: one may straddle two feeds.
        self._tail = b""
        self._events: list[Request] = []
        self._upgrade_request: Request | None = None
        self.upgraded = False
        #: A request without keep-alive ended the stream: later bytes are ignored.
        self.finished = False

    @property
    def held(self) -> int:
        """Bytes held of the body being received."""
        body = self._body
        return len(body) if body is not None else 0

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket."""
        if self.upgraded:
            parsed = 0
        elif (
            self._state == _IDLE
            and not self._head_bytes  # (empty lines before a request line: llhttp's)
            and not self._tail
            and not self.finished
        ):
            # The fast path (`head.parse_head`) first, whole (the common read: one head, a
            # WebSocket handshake's, a poll's), then head by head (`_take_heads`).
            whole = data[-4:] == _END_OF_HEAD and len(data) <= self.max_header_bytes
            if whole:
                request = parse_head(data)  # (None too if data holds more than one head)
                if request is not None:
                    self._took(request, b"")
                    return
            parsed = self._take_heads(data, whole)
            if parsed < len(data) and not self.finished and not self.upgraded:
                parsed += self._parse(data[parsed:] if parsed else data)
        else:
            parsed = self._parse(data)
        if self.upgraded and parsed < len(data):
            # Already the new protocol: the server hands it over when it switches.
            request = self._upgrade_request
            assert request is not None
            request.upgrade_data += data[parsed:]

    def _take_heads(self, data: bytes, tried: bool) -> int:
        """The fast path head by head, from between requests while nothing of a request is
        held: the whole heads of `data` this parser is sure of are taken without llhttp; how
        many bytes were taken (`tried`: `parse_head` refused the whole of `data`). What it
        leaves is llhttp's, from the start of a request (llhttp is then between requests
        too: it has been fed only whole requests or nothing)."""
        size = len(data)
        position = 0
        while position < size and not self.finished:
            end = data.find(_END_OF_HEAD, position)
            if end < 0 or end + 4 - position > self.max_header_bytes:
                break
            end += 4
            if tried and end == size and position == 0:
                break  # (refused already)
            request = parse_head(data[position:end] if position or end < size else data)
            if request is None:
                break
            position = end
            self._took(request, data[end:] if end < size else b"")
            if request.upgrade:
                return size
        return position

    def _took(self, request: Request, rest: bytes) -> None:
        """`request` is complete: an upgrade ends the HTTP stream (`rest`, what followed it,
        is already the new protocol's); a request without keep-alive ends it too."""
        self._events.append(request)
        if request.upgrade:
            self.upgraded = True
            request.upgrade_data = rest
            self._upgrade_request = request
            self.release()  # nothing more is parsed
        else:
            self.finished = not request.keep_alive

    def _parse(self, data: bytes) -> int:
        """Feed llhttp until the data, the HTTP stream or the HTTP protocol ends; how many
        bytes were fed."""
        # llhttp is fed slices that each hold bytes of one request only, cut where a head
        # ends (CRLFCRLF), where a Content-Length body ends, and after each CRLFCRLF of a
        # chunked body (only there can it end). So every byte is counted for its request.
        position, size = 0, len(data)
        while position < size and not self.finished and not self.upgraded:
            if self._state != _BODY:
                end = self._find_end_of_head(data, position)
                stop = size if end < 0 else end
                self._head_bytes += stop - position
                if self._head_bytes > self.max_header_bytes:
                    shown = f"{self._head_bytes} " if end >= 0 else ""
                    raise HeadersTooLarge(
                        f"request head over size limit ({shown}> {self.max_header_bytes} bytes)"
                    )
            elif self._body_left is not None:
                end = -1
                stop = min(size, position + self._body_left)
                if stop == position:
                    stop = size  # cannot happen (llhttp ends a body at its length); never spin
                self._body_left = max(0, self._body_left - (stop - position))
            else:
                end = self._find_end_of_head(data, position)
                stop = size if end < 0 else end
                self._chunked_bytes += stop - position
                limit = self.max_body_bytes + self.max_header_bytes
                if self._chunked_bytes > limit:
                    raise BodyTooLarge(
                        f"chunked body over size limit ({self._chunked_bytes} > {limit} bytes "
                        "on the wire, framing and trailers included)"
                    )
            piece = data if position == 0 and stop == size else data[position:stop]
            self._tail = b"" if end >= 0 else (self._tail + piece)[-3:]
            self._feed(piece)
            position = stop
        return position

    def _find_end_of_head(self, data: bytes, start: int) -> int:
        """The index just past the first CRLFCRLF from `start` (one that began in the previous
        feed included), or -1."""
        tail = self._tail
        if tail:
            index = (tail + data[start : start + 3]).find(_END_OF_HEAD)
            if index >= 0:
                return start + index + 4 - len(tail)
        index = data.find(_END_OF_HEAD, start)
        return index if index < 0 else index + 4

    def _feed(self, piece: bytes) -> None:
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(piece)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(piece)
            self._finish_upgrade(piece[offset:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RemoteError):
                raise cause from None
            raise BadRequest(f"malformed request: {exc}") from exc
        except httptools.HttpParserError as exc:
            raise BadRequest(f"malformed request: {exc}") from exc

    def release(self) -> None:
        """Nothing more will be parsed (what is fed after is ignored): llhttp is let go. It
        refers back to this parser (its callbacks are this parser's bound methods), so without
        this both, with the last request and its headers, waited for the cycle collector: in
        a burst of connections, memory that fragmented the heap (~0.9 KiB of RSS a
        subscriber after their handshakes, issue 18)."""
        self._parser = None
        self.finished = True

    def rest(self) -> None:
        """The connection will wait long for its next request (a held poll): llhttp (~0.9 KiB
        with its callbacks) is let go between requests, and made again (~1 us) when bytes
        come. Nothing happens in the middle of a request."""
        if self._state == _IDLE:
            self._parser = None

    def events_received(self) -> list[Request]:
        """Requests completed since the last call, in order."""
        events, self._events = self._events, []
        return events

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self.in_request = self.in_head = True
        self._target = b""
        self._headers = []
        self._body = None

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _BODY:
            # A trailer field: RFC 9110 6.5.1, not merged into the headers (an Origin or a
            # Content-Type that arrives after the body must not count as one).
            return
        # RFC 9112 5.1: whitespace around a field value is not part of it (llhttp keeps
        # the trailing whitespace).
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        self._state = _BODY
        self.in_head = False
        self._body_left = 0
        self._check_version()
        hosts = 0
        for key, value in self._headers:
            if key == "host":
                hosts += 1
                if hosts > 1:
                    raise BadRequest("more than one Host header")
            elif key == "content-length":
                length = decimal(value, "Content-Length")
                if length > self.max_body_bytes:
                    raise BodyTooLarge(
                        f"body over size limit ({length} > {self.max_body_bytes} bytes)"
                    )
                self._body_left = length
            elif key == "transfer-encoding":
                self._body_left = None  # llhttp refuses any coding but a final chunked
                self._chunked_bytes = 0

    def _check_version(self) -> None:
        parser = self._parser
        assert parser is not None  # (called back by it)
        version = parser.get_http_version()
        if version in ("1.1", "1.0"):
            return
        if version == "0.9":
            # llhttp's name for a request line without a version: an HTTP/0.9 request, whose
            # client would take our status line and headers for the body.
            raise BadRequest("a request line without an HTTP version (HTTP/0.9)")
        raise VersionNotSupported(f"HTTP/{version} is not supported: HTTP/1.1 or HTTP/1.0")

    def on_body(self, body: bytes) -> None:
        held = self._body
        if held is None:
            held = self._body = bytearray()
        held += body
        if len(held) > self.max_body_bytes:
            raise BodyTooLarge(f"body over size limit (> {self.max_body_bytes} bytes)")

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # (called back by it)
        if parser.should_upgrade():
            return  # finished in _finish_upgrade, with the bytes that follow
        self._took(self._build(upgrade=False), b"")

    def _finish_upgrade(self, rest: bytes) -> None:
        self._took(self._build(upgrade=True), rest)

    def _build(self, upgrade: bool) -> Request:
        parser = self._parser
        assert parser is not None  # (called back by it)
        self._state = _IDLE
        self.in_request = False
        self._head_bytes = 0
        self._tail = b""
        target = self._target.decode("latin-1")
        path, _, query = target.partition("?")
        if "#" in path:
            path = path.partition("#")[0]
        body, self._body = self._body, None
        method = parser.get_method()
        return Request(
            _METHODS.get(method) or method.decode("ascii"),
            unquote(path) if "%" in path else path,
            query,
            parser.get_http_version(),
            self._headers,
            parser.should_keep_alive(),
            bytes(body) if body is not None else b"",
            upgrade,
            raw_target=target,
        )
