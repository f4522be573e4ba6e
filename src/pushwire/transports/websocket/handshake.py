"""The WebSocket opening handshake (RFC 6455 4.2), sans-I/O.

`check_handshake()` checks an upgrade request (4.2.1) and picks the subprotocol, or raises the
error whose status the client must get (400, 403, 405, 426). `switching_protocols()` is the
101 answer a door that speaks HTTP/1.1 itself writes back (4.2.2).
"""

from __future__ import annotations

import binascii
import hashlib
import importlib
from collections.abc import Callable, Sequence
from typing import Final, cast

from ...errors import BadRequest, Forbidden, MethodNotAllowed, UpgradeRequired
from ...origin import OriginPolicy
from ...parsing import quoted
from ...web import Request


def _own_sha1() -> Callable[[bytes], hashlib._Hash]:
    """CPython's own SHA-1 when it has one: `hashlib.sha1` fetches OpenSSL's implementation
    by name on every call (OpenSSL 3: a locked lookup), half of an accept key's cost (py-spy)."""
    try:
        return cast(Callable[[bytes], "hashlib._Hash"], importlib.import_module("_sha1").sha1)
    except ImportError:  # pragma: no cover (another Python)
        return hashlib.sha1


_sha1: Final = _own_sha1()

__all__ = ["accept_key", "check_handshake", "read_handshake", "switching_protocols"]


#: RFC 6455 4.2.2: what the key is suffixed with before it is hashed for the accept key.
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The 101 answer's constant lines (`switching_protocols`).
_SWITCHING: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)


def _has_token(value: str, token: str) -> bool:
    """Whether the comma-separated `value` holds `token` (lower case), in any case."""
    return value.lower() == token or any(  # (the common case first: the one token alone)
        part.strip().lower() == token for part in value.split(",")
    )


def check_handshake(
    request: Request,
    *,
    policy: OriginPolicy,
    subprotocols: Sequence[str],
    any_origin: bool = False,
) -> str | None:
    """Validate a WebSocket upgrade request; the subprotocol chosen, or None. Raises as
    `read_handshake`."""
    return read_handshake(request, policy=policy, subprotocols=subprotocols, any_origin=any_origin)[
        0
    ]


def read_handshake(
    request: Request,
    *,
    policy: OriginPolicy,
    subprotocols: Sequence[str],
    any_origin: bool = False,
) -> tuple[str | None, str]:
    """Validate a WebSocket upgrade request: the subprotocol chosen (or None), and the
    client's `Sec-WebSocket-Key` (what the 101 answers, `switching_protocols`).

    `subprotocols` is the server's list in its order of preference: the first one the client
    also offered is chosen (RFC 6455 4.2.2 leaves the choice to the server).

    Raises:
        MethodNotAllowed: not GET (405).
        BadRequest: a header RFC 6455 4.2.1 requires is missing or wrong (400).
        UpgradeRequired: `Sec-WebSocket-Version` is not 13 (426, RFC 6455 4.4).
        Forbidden: the Origin is not allowed (403).
    """
    if request.method != "GET":
        raise MethodNotAllowed(f"a WebSocket handshake must be GET, not {request.method}")
    if request.version != "1.1":
        raise BadRequest(f"a WebSocket handshake needs HTTP/1.1, not HTTP/{request.version}")
    # One pass over the headers (a handshake's cost is mostly such walks): the first Host
    # and Origin; the others' values, a header's lines joined by commas as RFC 9110 5.3
    # allows (the key's are counted: it must come once).
    host = origin = upgrade = connection = version = key = offers = None
    keys = 0
    for name, value in request.headers:
        if name == "host":
            if host is None:
                host = value
        elif name == "upgrade":
            upgrade = value if upgrade is None else f"{upgrade},{value}"
        elif name == "connection":
            connection = value if connection is None else f"{connection},{value}"
        elif name == "sec-websocket-key":
            key = value
            keys += 1
        elif name == "sec-websocket-version":
            version = value if version is None else f"{version}, {value}"
        elif name == "origin":
            if origin is None:
                origin = value
        elif name == "sec-websocket-protocol":
            offers = value if offers is None else f"{offers},{value}"
    if host is None:
        raise BadRequest("missing Host header")
    if upgrade is None or not _has_token(upgrade, "websocket"):
        raise BadRequest("missing or invalid Upgrade header: expected websocket")
    if connection is None or not _has_token(connection, "upgrade"):
        raise BadRequest("missing or invalid Connection header: expected Upgrade")
    if version != "13":
        got = version or "none"
        raise UpgradeRequired(f"unsupported Sec-WebSocket-Version {got}: only 13 is supported")
    if keys != 1 or key is None:
        raise BadRequest("missing or repeated Sec-WebSocket-Key header")
    try:
        raw_key = binascii.a2b_base64(key, strict_mode=True)  # (a non-ASCII str: ValueError)
    except ValueError:
        raw_key = b""
    if len(raw_key) != 16:
        raise BadRequest(f"invalid Sec-WebSocket-Key {key!r}: must be 16 base64 bytes")
    if origin is not None and not policy.allows(origin, host, any_origin=any_origin):
        raise Forbidden(f"origin {quoted(origin)} is not allowed")
    if offers is None or not subprotocols:
        return None, key
    offered = [token.strip().lower() for token in offers.split(",")]
    return next((name for name in subprotocols if name.lower() in offered), None), key


def accept_key(key: str) -> bytes:
    """The `Sec-WebSocket-Accept` value for the client's `Sec-WebSocket-Key` (RFC 6455 4.2.2)."""
    return binascii.b2a_base64(_sha1(key.encode("latin-1") + _GUID).digest(), newline=False)


def switching_protocols(
    request: Request | str, subprotocol: str | None, extensions: str | None = None
) -> bytes:
    """The 101 answer to a request that `check_handshake` accepted (or to its key, as
    `read_handshake` gave it); `extensions`: the `Sec-WebSocket-Extensions` value agreed
    (permessage-deflate), if any."""
    key = request if isinstance(request, str) else request.header("sec-websocket-key") or ""
    if subprotocol is None and extensions is None:  # (a raw client's: `accept_key` inline)
        digest = _sha1(key.encode("latin-1") + _GUID).digest()
        return _SWITCHING + binascii.b2a_base64(digest, newline=False) + b"\r\n\r\n"
    answer = _SWITCHING + accept_key(key)
    lines = [answer]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}".encode("latin-1"))
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}".encode("latin-1"))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)
