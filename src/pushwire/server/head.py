"""The common request head in one pass: the fast path of `RequestParser`.

A subscriber's WebSocket handshake is one short head in one read. Through llhttp it cost
~19 us of Python (a callback per header, the URL, the end of the head, then the version and
flags asked back); split on CRLF, checked with a few C-speed string methods, it costs a few.

`parse_head` is strict where llhttp is lenient and answers None for anything it is not sure
of: the caller then parses the same bytes with llhttp, from scratch, so every error and every
rare form keeps llhttp's answer. It takes only:

- a request line `METHOD SP target SP HTTP/1.1|HTTP/1.0 CRLF`, with one of `_METHODS`
  (never CONNECT) and an origin-form target (`/` then visible ASCII);
- header lines `token ":" OWS value OWS CRLF`, the value made of HTAB, SP, VCHAR and obs-text
  (no obs-fold, no bare CR or LF, no NUL or other CTL, no DEL);
- at most one Host; no Content-Length, no Transfer-Encoding (bodies stay with llhttp); no
  Upgrade header with an empty value;
- then the empty line.

llhttp's flags, established by experiment against httptools 0.9 (llhttp 9) and held by
tests/server/test_head.py:

- Connection and Proxy-Connection both count, every such header adding to the flags. Their
  value is a comma-separated list; an element that, stripped of SP and HTAB and compared
  without ASCII case, is `close`, `keep-alive` or `upgrade` sets that flag (`close foo`,
  `closed` set none);
- upgrade: an Upgrade header and the `upgrade` flag (llhttp takes an Upgrade header with an
  empty value as none: such heads are left to it);
- keep-alive: HTTP/1.1 without the `close` flag; HTTP/1.0 with the `keep-alive` flag (the other
  flags do not matter). The same for an upgrade.

Bounds are the caller's: `RequestParser` asks only for a head within `max_header_bytes`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from ..web import Request

__all__ = ["parse_head"]

#: The methods taken (llhttp knows more: they go its way), each name made once.
_METHODS: Final = {m: m for m in ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH")}
_VERSIONS: Final = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0"}

#: Each byte a head may hold kept, each other (CTLs but HTAB, CR and LF; DEL) made NUL.
_CHECKED: Final = bytes(
    0 if (b < 0x20 and b not in b"\t\r\n") or b == 0x7F else b for b in range(256)
)

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Header lines seen, each as its (name in lower case, value) pair: a handshake's lines are
#: mostly those of the handshakes before it (Host, Upgrade, Connection...), and a dict lookup
#: is a third of splitting and checking one. The lines are the clients': the memo is
#: bounded in lines and in line length, and emptied when full.
_FIELDS: dict[str, tuple[str, str]] = {}
_FIELDS_KEPT: Final = 512
_FIELD_KEPT_LENGTH: Final = 200
#: Header names seen (of lines not kept, a WebSocket key's), each with its lower-case form:
#: bounded the same way, and never emptied (names repeat: at worst one is checked again).
_NAMES: dict[str, str] = {}
#: Fields never kept: each is new (RFC 6455 4.1: a nonce per handshake), or a credential,
#: which must not outlive its request in a process-wide memo.
_UNIQUE: Final = frozenset(("sec-websocket-key", "authorization", "proxy-authorization", "cookie"))

#: The headers llhttp reads itself; any other name is only passed on.
_SPECIAL: Final = frozenset(
    ("host", "connection", "proxy-connection", "upgrade", "content-length", "transfer-encoding")
)


def parse_head(head: bytes) -> Request | None:
    """The request of `head` (up to and with its first CRLFCRLF, nothing after) as llhttp
    would make it; None if it is not one this parser is sure of (see the module's docstring).

    The request has no body; an upgrade's `upgrade_data` is left empty for the caller.
    """
    if 0 in head.translate(_CHECKED) or not head.endswith(b"\r\n\r\n"):
        return None
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    crlfs = len(lines) - 1
    if text.count("\n") != crlfs or text.count("\r") != crlfs:
        return None  # a bare CR or LF
    request_line = lines[0].split(" ")
    if len(request_line) != 3:
        return None
    method = _METHODS.get(request_line[0])
    target = request_line[1]
    version = _VERSIONS.get(request_line[2])
    if method is None or version is None:
        return None
    if target[:1] != "/" or not target.isascii() or "\t" in target:
        return None
    headers = []
    special = []
    for line in lines[1:-2]:  # the last two: the empty line, and nothing after it
        field = _FIELDS.get(line) or _field(line)
        if field is None:
            return None
        headers.append(field)
        if field[0] in _SPECIAL:
            special.append(field)
    hosts = 0
    upgrade_header = close = keep_alive = upgrade = False
    for key, value in special:
        if key == "host":
            hosts += 1
        elif key == "upgrade" and value:
            upgrade_header = True
        elif key == "connection" or key == "proxy-connection":
            value = value.lower()
            for element in value.split(",") if "," in value else (value,):
                element = element.strip(" \t")
                if element == "upgrade":
                    upgrade = True
                elif element == "keep-alive":
                    keep_alive = True
                elif element == "close":
                    close = True
        else:
            return None  # a body (Content-Length, Transfer-Encoding) or an empty Upgrade
    if hosts > 1:
        return None  # llhttp's path refuses it (RFC 9112 3.2)
    path, _, query = target.partition("?")
    if "#" in path:
        path = path.partition("#")[0]
    return Request(
        method,
        unquote(path) if "%" in path else path,
        query,
        version,
        headers,
        not close if version == "1.1" else keep_alive,
        b"",
        upgrade_header and upgrade,
        raw_target=target,
    )


def _field(line: str) -> tuple[str, str] | None:
    """The (name in lower case, value) of a header line; None if it is not `token ":" value`
    (the value's bytes are checked before)."""
    name, colon, value = line.partition(":")
    key = _NAMES.get(name)
    if key is None:
        if _TOKEN.fullmatch(name) is None:
            return None
        key = name.lower()
        if len(_NAMES) < _FIELDS_KEPT and len(name) <= _FIELD_KEPT_LENGTH:
            _NAMES[name] = key
    if not colon:
        return None
    field = (key, value.strip(" \t"))
    if len(line) <= _FIELD_KEPT_LENGTH and field[0] not in _UNIQUE:
        if len(_FIELDS) >= _FIELDS_KEPT:
            _FIELDS.clear()
        _FIELDS[line] = field
    return field
