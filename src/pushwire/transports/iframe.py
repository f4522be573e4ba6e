"""The `iframe` transport: the forever frame of the seed article's hidden iframe.

One chunked `text/html` response that does not end. It starts with a prelude: a script that
defines `p(envelope)`, which hands each envelope to the parent page with `postMessage`
(so the page may be on another origin, which must be on the allow-list), padded so that
browsers start rendering at once. Then each envelope is one `<script>p(...)</script>` chunk.
After `iframe_max_bytes` the server ends the document with a `close` envelope (code 4000), and
the client opens a new iframe that resumes the session: the document does not grow forever.
A door that speaks HTTP/1.1 puts each script in a chunk.
"""

from __future__ import annotations

from typing import Final

import orjson

from ..core import Hub
from ..endpoint import Endpoint
from ..envelope import TextFraming
from ..errors import Forbidden
from ..origin import OriginPolicy
from ..parsing import quoted
from ..web import Request, StreamResponse
from .http_session import StreamWire, envelope_stream, opening_hello

__all__ = ["IFRAME_FRAMING", "IFRAME_HEARTBEAT", "iframe_prelude", "iframe_stream"]

CONTENT_TYPE: Final = "text/html; charset=utf-8"

#: Bytes of padding in the prelude; browsers buffer the first bytes of a document.
PADDING: Final = 2048


class IframeFraming(TextFraming):
    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        # "<" only occurs inside JSON strings; escaping it keeps "</script>" out of the page.
        return b"<script>p(" + payload.replace(b"<", b"\\u003c") + b")</script>\n"


def iframe_prelude(target_origin: str) -> bytes:
    """The document's start: `p()` posts to the parent at `target_origin` (an allowed origin)."""
    origin = orjson.dumps(target_origin).replace(b"<", b"\\u003c")
    script = (
        b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>pushwire</title></head>"
        b"<body><script>var o=" + origin + b";"
        b"function p(m){parent.postMessage({pushwire:m},o)}</script>\n"
    )
    return script + b"<!--" + b" " * PADDING + b"-->\n"


IFRAME_FRAMING: Final = IframeFraming()
IFRAME_HEARTBEAT: Final = b"<!-- hb -->\n"
IFRAME: Final = StreamWire("iframe", CONTENT_TYPE, IFRAME_FRAMING, IFRAME_HEARTBEAT)


def iframe_stream(
    hub: Hub,
    request: Request,
    endpoint: Endpoint,
    cors: list[tuple[str, str]],
    *,
    policy: OriginPolicy,
    max_bytes: int,
) -> StreamResponse:
    """`GET E/iframe?hello=…&origin=O`: a pushwire.v1 session posted to a parent page on
    origin O, which must be allowed as an Origin header would be (`Forbidden` otherwise)."""
    opening_hello(request, "iframe")  # checked first: a bad request says so before its origin
    target = request.query_param("origin") or ""
    allowed = policy.allowed_origin(target, request.header("host"))
    if allowed is None:
        raise Forbidden(f"origin {quoted(target)} is not allowed")
    # The origin as parsed, not as given: postMessage delivers to what the browser makes of
    # the string, and only the parsed form is what the policy allowed.
    first = iframe_prelude(str(allowed))
    return envelope_stream(hub, request, endpoint, cors, IFRAME, first=first, max_bytes=max_bytes)
