"""The `iframe` transport: the forever frame of the seed article's hidden iframe.

One chunked `text/html` response that does not end. It starts with a prelude: a script that
defines `p(envelope)`, which hands each envelope to the parent page with `postMessage`
(so the page may be on another origin, which must be on the allow-list), padded so that
browsers start rendering at once. Then each envelope is one `<script>p(...)</script>` chunk.
After `iframe_max_bytes` the server ends the document with a `close` envelope (code 4000), and
the client opens a new iframe that resumes the session: the document does not grow forever.
"""

from __future__ import annotations

from typing import Final

import orjson

from ..envelope import TextFraming
from ..http.response import chunk

__all__ = ["IFRAME_FRAMING", "IFRAME_HEARTBEAT", "iframe_prelude"]

#: Bytes of padding in the prelude; browsers buffer the first bytes of a document.
PADDING: Final = 2048


class IframeFraming(TextFraming):
    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        # "<" only occurs inside JSON strings; escaping it keeps "</script>" out of the page.
        return chunk(b"<script>p(" + payload.replace(b"<", b"\\u003c") + b")</script>\n")


def iframe_prelude(target_origin: str) -> bytes:
    """The document's start: `p()` posts to the parent at `target_origin` (an allowed origin)."""
    origin = orjson.dumps(target_origin).replace(b"<", b"\\u003c")
    script = (
        b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>pushwire</title></head>"
        b"<body><script>var o=" + origin + b";"
        b"function p(m){parent.postMessage({pushwire:m},o)}</script>\n"
    )
    return chunk(script + b"<!--" + b" " * PADDING + b"-->\n")


IFRAME_FRAMING: Final = IframeFraming()
IFRAME_HEARTBEAT: Final = chunk(b"<!-- hb -->\n")
