"""The WebSocket opening handshake (RFC 6455 4.2), sans-I/O.

`check_handshake()` checks an upgrade request (4.2.1) and picks the subprotocol, or raises the
error whose status the client must get (400, 403, 405, 426). `switching_protocols()` is the
101 answer a door that speaks HTTP/1.1 itself writes back (4.2.2).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from websockets.utils import accept_key

from ...errors import BadRequest, Forbidden, MethodNotAllowed, UpgradeRequired
from ...origin import OriginPolicy
from ...parsing import quoted
from ...web import Request

__all__ = ["check_handshake", "switching_protocols"]


def _tokens(values: list[str]) -> list[str]:
    return [token.strip().lower() for value in values for token in value.split(",")]


def check_handshake(
    request: Request,
    *,
    policy: OriginPolicy,
    subprotocols: Sequence[str],
    any_origin: bool = False,
) -> str | None:
    """Validate a WebSocket upgrade request; the subprotocol chosen, or None.

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
    if request.header("host") is None:
        raise BadRequest("missing Host header")
    if "websocket" not in _tokens(request.header_values("upgrade")):
        raise BadRequest("missing or invalid Upgrade header: expected websocket")
    if "upgrade" not in _tokens(request.header_values("connection")):
        raise BadRequest("missing or invalid Connection header: expected Upgrade")
    versions = request.header_values("sec-websocket-version")
    if versions != ["13"]:
        got = ", ".join(versions) or "none"
        raise UpgradeRequired(f"unsupported Sec-WebSocket-Version {got}: only 13 is supported")
    keys = request.header_values("sec-websocket-key")
    if len(keys) != 1:
        raise BadRequest("missing or repeated Sec-WebSocket-Key header")
    try:
        raw_key = base64.b64decode(keys[0].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw_key = b""
    if len(raw_key) != 16:
        raise BadRequest(f"invalid Sec-WebSocket-Key {keys[0]!r}: must be 16 base64 bytes")
    origin = request.header("origin")
    if not policy.allows(origin, request.header("host"), any_origin=any_origin):
        raise Forbidden(f"origin {quoted(origin)} is not allowed")
    offered = [t for t in _tokens(request.header_values("sec-websocket-protocol")) if t]
    return next((name for name in subprotocols if name.lower() in offered), None)


def switching_protocols(
    request: Request, subprotocol: str | None, extensions: str | None = None
) -> bytes:
    """The 101 answer to a request that `check_handshake` accepted; `extensions`: the
    `Sec-WebSocket-Extensions` value agreed (permessage-deflate), if any."""
    key = request.header("sec-websocket-key") or ""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")
