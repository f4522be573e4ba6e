"""The common request head in one pass: the fast path of `RequestParser`.

A subscriber's WebSocket handshake is one short head in one read. Through llhttp it cost
~19 us of Python (a callback per header, the URL, the end of the head, then the version and
flags asked back); taken apart with a few C-speed string methods and two memos, it costs a
few.

`parse_head` is strict where llhttp is lenient and answers None for anything it is not sure
of: the caller then parses the same bytes with llhttp, from scratch, so every error and every
rare form keeps llhttp's answer. It takes only:

- a request line `METHOD SP target SP HTTP/1.1|HTTP/1.0 CRLF`, with one of `_METHODS`
  (never CONNECT) and an origin-form target (`/` then visible ASCII);
- header lines `token ":" OWS value OWS CRLF`, the value made of HTAB, SP, VCHAR and obs-text
  (no obs-fold, no bare CR or LF, no NUL or other CTL, no DEL);
- at most one Host; no Content-Length, no Transfer-Encoding (bodies stay with llhttp); no
  Upgrade header with an empty value;
- then the empty line; fewer than `_MOST_LINES` lines in all.

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

Two memos make a head that is mostly one seen before cheap; both hold only lines that
passed every check, both are bounded, and neither ever holds a credential or a WebSocket key
(`_UNIQUE`: a nonce per handshake, RFC 6455 4.1; or a credential, which must not outlive its
request in a process-wide memo):

- `_BLOCKS`: a WebSocket handshake's head but for its request line and its key (its version
  and every other line: the same for every handshake of a client program) -> its headers
  around the key and its flags. A handshake of a known client is then split three times,
  looked up once, and checked only in its target and key;
- `_FIELDS`: each header line -> its field and flags, for every other head (and a new
  block). The lines are looked up in C (`map`), and a head's flags are the sum of its lines'.

Bounds are the caller's: `RequestParser` asks only for a head within `max_header_bytes`.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Final
from urllib.parse import unquote

from ..web import Request

__all__ = ["parse_head"]

#: The methods taken (llhttp knows more: they go its way), each name made once.
_METHODS: Final = {m: m for m in ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH")}
_VERSIONS: Final = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0"}

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A field value's characters: HTAB, SP, VCHAR, obs-text. (`str.isprintable`, tried first,
#: takes SP, VCHAR and most of obs-text, and never a CTL, CR, LF or DEL.)
_VALUE: Final = re.compile("[\t\x20-\x7e\x80-\xff]*")

#: A line's flags are counts, each in its own `_BITS` bits of one int, so that a head's flags
#: are the sum of its lines': a head has fewer lines than `_MOST_LINES`, so no count carries
#: into the next. Refused (`_REFUSED`, the highest): a line not sure of, a body's header, an
#: empty Upgrade.
_BITS: Final = 10
_MOST_LINES: Final = 1 << _BITS
_HOSTS: Final = 1
_UPGRADE_HEADER: Final = 1 << _BITS
_UPGRADE: Final = 1 << 2 * _BITS
_CLOSE: Final = 1 << 3 * _BITS
_KEEP_ALIVE: Final = 1 << 4 * _BITS
_REFUSED: Final = 1 << 5 * _BITS
_CONNECTION_FLAGS: Final = {"upgrade": _UPGRADE, "keep-alive": _KEEP_ALIVE, "close": _CLOSE}
#: Each count's bits, to read it.
_COUNT: Final = _MOST_LINES - 1
_ANY_UPGRADE_HEADER: Final = _UPGRADE_HEADER * _COUNT
_ANY_UPGRADE: Final = _UPGRADE * _COUNT
_ANY_CLOSE: Final = _CLOSE * _COUNT
_ANY_KEEP_ALIVE: Final = _KEEP_ALIVE * _COUNT

#: Fields never kept in a memo: each is new (RFC 6455 4.1: a nonce per handshake), or a
#: credential, which must not outlive its request in a process-wide memo.
_UNIQUE: Final = frozenset(("sec-websocket-key", "authorization", "proxy-authorization", "cookie"))

#: Memos of lines are bounded in lines and in line length, and emptied when full.
_FIELDS_KEPT: Final = 512
_FIELD_KEPT_LENGTH: Final = 200
#: Header names seen (of lines not kept, a WebSocket key's), each with its lower-case form:
#: bounded the same way, and never emptied (names repeat: at worst one is checked again).
_NAMES: dict[str, str] = {}

Field = tuple[str, str]
#: A header line's (name in lower case, value) and flags.
_Entry = tuple[Field, int]
_NOT_SURE: Final[_Entry] = (("", ""), _REFUSED)


class _Lines(dict[str, _Entry]):
    """Header lines seen -> their entries: a handshake's lines are mostly those of the
    handshakes before it (Host, Upgrade, Connection...), and a lookup is a fraction of
    splitting and checking one. A line not seen is checked by `__missing__`."""

    __slots__ = ()

    def __missing__(self, line: str) -> _Entry:
        name, colon, value = line.partition(":")
        key = _NAMES.get(name)
        if key is None:
            if _TOKEN.fullmatch(name) is None:
                return _NOT_SURE
            key = name.lower()
            if len(_NAMES) < _FIELDS_KEPT and len(name) <= _FIELD_KEPT_LENGTH:
                _NAMES[name] = key
        if not colon or not (value.isprintable() or _VALUE.fullmatch(value)):
            return _NOT_SURE
        value = value.strip(" \t")
        if key == "host":
            flags = _HOSTS
        elif key == "upgrade":
            flags = _UPGRADE_HEADER if value else _REFUSED
        elif key == "connection" or key == "proxy-connection":
            flags = 0
            for element in value.lower().split(","):
                flags |= _CONNECTION_FLAGS.get(element.strip(" \t"), 0)
        elif key == "content-length" or key == "transfer-encoding":
            flags = _REFUSED
        else:
            flags = 0
        entry = ((key, value), flags)
        if len(line) <= _FIELD_KEPT_LENGTH and key not in _UNIQUE:
            if len(self) >= _FIELDS_KEPT:
                self.clear()
            self[line] = entry
        return entry


_FIELDS: Final = _Lines()
_entry_of: Final = _FIELDS.__getitem__
_field_of: Final = itemgetter(0)
_flags_of: Final = itemgetter(1)

#: Where a WebSocket handshake's key is cut out (the usual spelling: another goes the way of
#: the lines), and the key's field name.
_KEY_LINE: Final = "\r\nSec-WebSocket-Key:"
_KEY: Final = "sec-websocket-key"
#: The rest of a handshake's head from its version to its key line (`before`) -> what follows
#: the key's line (`after`, to compare), the version, the fields before and after the key's,
#: keep-alive and upgrade. Bounded in heads and in length, and emptied when full.
_Block = tuple[str, str, tuple[Field, ...], tuple[Field, ...], bool, bool]
_BLOCKS: dict[str, _Block] = {}
_BLOCKS_KEPT: Final = 64
_BLOCK_KEPT_LENGTH: Final = 1024

_new: Final = object.__new__


def parse_head(head: bytes) -> Request | None:
    """The request of `head` (bytes ending with CRLFCRLF) as llhttp would make it; None if
    it is not one this parser is sure of (see the module's docstring), or if it holds an
    earlier CRLFCRLF (more than one head).

    The request has no body; an upgrade's `upgrade_data` is left empty for the caller.
    """
    text = head.decode("latin-1")
    parts = text.split(" ", 2)
    if len(parts) != 3:
        return None
    method = _METHODS.get(parts[0])
    target = parts[1]
    if (
        method is None
        or not target
        or target[0] != "/"
        or not target.isascii()
        or not target.isprintable()  # (and ASCII: VCHAR; no SP, split on it)
    ):
        return None
    rest = parts[2]  # from the version on
    before, key_line, after = rest.partition(_KEY_LINE)
    if key_line:
        value, _, after = after.partition("\r\n")
        block = _BLOCKS.get(before)
        if block is not None and block[0] == after:
            if not (value.isprintable() or _VALUE.fullmatch(value)):
                return None
            _, version, first, last, keep_alive, upgrade = block
            headers = [*first, (_KEY, value.strip(" \t")), *last]
        else:
            taken = _take_lines(rest, before, after)
            if taken is None:
                return None
            version, headers, keep_alive, upgrade = taken
    else:
        taken = _take_lines(rest, None, "")
        if taken is None:
            return None
        version, headers, keep_alive, upgrade = taken
    path, _, query = target.partition("?")
    if "#" in path:
        path = path.partition("#")[0]
    # Made field by field: the dataclass's __init__, called through its type, was a sixth of
    # the whole. (Every field is set: tests/server/test_head.py compares them all.)
    request: Request = _new(Request)
    request.method = method
    request.path = unquote(path) if "%" in path else path
    request.query = query
    request.version = version
    request.headers = headers
    request.keep_alive = keep_alive
    request.body = b""
    request.upgrade = upgrade
    request.upgrade_data = b""
    request.raw_target = target
    request.remote = None
    request.address = None
    return request


def _take_lines(
    rest: str, before: str | None, after: str
) -> tuple[str, list[Field], bool, bool] | None:
    """The version, headers, keep-alive and upgrade of a head from its version on, its
    header lines taken one by one (`_FIELDS`); a handshake's block is kept if it may be
    (`before` and `after`: around its key's line)."""
    version = _VERSIONS.get(rest[:8])
    if version is None or rest[8:10] != "\r\n":
        return None
    lines = rest[10:].split("\r\n")
    if len(lines) < 2 or lines[-1] or lines[-2] or len(lines) > _MOST_LINES:
        return None  # (not ending with an empty line; or too many lines to count)
    del lines[-2:]
    entries = [*map(_entry_of, lines)]
    flags = sum(map(_flags_of, entries))
    if flags >= _REFUSED or flags & _COUNT > 1:
        return None  # (more than one Host: llhttp's path refuses it, RFC 9112 3.2)
    headers = [*map(_field_of, entries)]
    keep_alive = not flags & _ANY_CLOSE if version == "1.1" else flags & _ANY_KEEP_ALIVE != 0
    upgrade = flags & _ANY_UPGRADE_HEADER != 0 and flags & _ANY_UPGRADE != 0
    if before is not None:
        _keep_block(before, after, version, headers, keep_alive, upgrade)
    return version, headers, keep_alive, upgrade


def _keep_block(
    before: str,
    after: str,
    version: str,
    headers: list[Field],
    keep_alive: bool,
    upgrade: bool,
) -> None:
    """Keep a handshake's block, unless it is long or holds another key or a credential."""
    if len(before) + len(after) > _BLOCK_KEPT_LENGTH:
        return
    index = before.count("\r\n")  # (the key's line's, `before` being the version's line on)
    first, last = headers[:index], headers[index + 1 :]
    for key, _ in first + last:
        if key in _UNIQUE:
            return
    if len(_BLOCKS) >= _BLOCKS_KEPT:
        _BLOCKS.clear()
    _BLOCKS[before] = (after, version, tuple(first), tuple(last), keep_alive, upgrade)
