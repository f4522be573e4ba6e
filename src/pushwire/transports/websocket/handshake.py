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


def _has_token(values: list[str], token: str) -> bool:
    """Whether one of the comma-separated `values` holds `token` (lower case), in any case."""
    for value in values:
        if value.lower() == token:  # the common case: the one token alone
            return True
        if any(part.strip().lower() == token for part in value.split(",")):
            return True
    return False


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
    # and Origin, every value of the others.
    host = origin = None
    upgrades: list[str] = []
    connections: list[str] = []
    versions: list[str] = []
    keys: list[str] = []
    offers: list[str] = []
    for name, value in request.headers:
        if name == "host":
            if host is None:
                host = value
        elif name == "upgrade":
            upgrades.append(value)
        elif name == "connection":
            connections.append(value)
        elif name == "sec-websocket-key":
            keys.append(value)
        elif name == "sec-websocket-version":
            versions.append(value)
        elif name == "origin":
            if origin is None:
                origin = value
        elif name == "sec-websocket-protocol":
            offers.append(value)
    if host is None:
        raise BadRequest("missing Host header")
    if not _has_token(upgrades, "websocket"):
        raise BadRequest("missing or invalid Upgrade header: expected websocket")
    if not _has_token(connections, "upgrade"):
        raise BadRequest("missing or invalid Connection header: expected Upgrade")
    if versions != ["13"]:
        got = ", ".join(versions) or "none"
        raise UpgradeRequired(f"unsupported Sec-WebSocket-Version {got}: only 13 is supported")
    if len(keys) != 1:
        raise BadRequest("missing or repeated Sec-WebSocket-Key header")
    key = keys[0]
    try:
        raw_key = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raw_key = b""
    if len(raw_key) != 16:
        raise BadRequest(f"invalid Sec-WebSocket-Key {key!r}: must be 16 base64 bytes")
    if origin is not None and not policy.allows(origin, host, any_origin=any_origin):
        raise Forbidden(f"origin {quoted(origin)} is not allowed")
    if not offers or not subprotocols:
        return None, key
    offered = [token.strip().lower() for value in offers for token in value.split(",")]
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
    answer = _SWITCHING + accept_key(key)
    if subprotocol is None and extensions is None:
        return answer + b"\r\n\r\n"
    lines = [answer]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}".encode("latin-1"))
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}".encode("latin-1"))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)
