"""An ASGI connection scope as the app interface's `Request`, and the body of an HTTP one.

ASGI types are plain dicts (the spec's own); only the keys read here are relied on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from ..errors import BodyTooLarge
from ..web import Request

__all__ = ["Receive", "Scope", "Send", "read_body", "route_path", "scope_request"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


def route_path(scope: Scope) -> str:
    """The path below where the app is mounted: `path` without `root_path` (ASGI says `path`
    holds the whole path; a server or router that left `root_path` out of it is taken as
    it is). Starlette's `Mount("/rt", app)` and uvicorn's `--root-path` both set it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        rest = path[len(root) :]
        if not rest or rest[0] == "/":
            return rest or "/"
    return path


def scope_request(scope: Scope, body: bytes = b"") -> Request:
    """The `Request` of an `http` or `websocket` scope.

    HTTP/2 and HTTP/3 carry never-ending answers and WebSocket (RFC 8441) in their own
    framing, done by the ASGI server: to the app they are what HTTP/1.1 is (the transports
    refuse HTTP/1.0, which has neither chunks nor an upgrade).
    """
    version = scope.get("http_version", "1.1")
    if version in ("2", "3"):
        version = "1.1"
    client = scope.get("client")
    websocket = scope["type"] == "websocket"
    return Request(
        method="GET" if websocket else scope["method"],
        path=route_path(scope),
        query=scope.get("query_string", b"").decode("latin-1"),
        version=version,
        headers=[
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope.get("headers", ())
        ],
        keep_alive=True,  # the ASGI server's business
        body=body,
        upgrade=websocket,
        remote=f"{client[0]}:{client[1]}" if client else None,
        # The ASGI server's client: behind a proxy, its own proxy-headers option (uvicorn's
        # --proxy-headers) reads X-Forwarded-For; pushwire's trust_proxy is the native door's.
        address=client[0] if client else None,
    )


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body (None: the client went away first).

    Raises:
        BodyTooLarge: over `limit` bytes (`max_body_bytes`), told as soon as it is.
    """
    length = 0
    pieces: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        piece = message.get("body", b"")
        if piece:
            length += len(piece)
            if length > limit:
                raise BodyTooLarge(f"body over size limit (> {limit} bytes)")
            pieces.append(piece)
        if not message.get("more_body", False):
            return b"".join(pieces)
