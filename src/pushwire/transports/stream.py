"""The `stream` transport (xhr / fetch streaming): one never-ending response, one envelope a
line (NDJSON).

The same lines are what the poll transports return, so both share one framing (a door that
speaks HTTP/1.1 puts each streamed line in a chunk). Heartbeats are empty lines, which clients
skip.
"""

from __future__ import annotations

from typing import Final

from ..core import Hub
from ..endpoint import Endpoint
from ..envelope import TextFraming
from ..web import Request, StreamResponse
from .http_session import envelope_stream, opening_hello

__all__ = ["NDJSON_FRAMING", "STREAM_HEARTBEAT", "NdjsonFraming", "ndjson_stream"]

CONTENT_TYPE: Final = "application/x-ndjson; charset=utf-8"


class NdjsonFraming(TextFraming):
    """One envelope per line."""

    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        return payload + b"\n"


NDJSON_FRAMING: Final = NdjsonFraming()
STREAM_HEARTBEAT: Final = b"\n"


def ndjson_stream(
    hub: Hub, request: Request, endpoint: Endpoint, cors: list[tuple[str, str]]
) -> StreamResponse:
    """`GET E/stream?hello=…`: a pushwire.v1 session, an envelope a line."""
    hello = opening_hello(request, "stream")
    return envelope_stream(
        hub,
        request,
        endpoint,
        hello,
        kind="stream",
        content_type=CONTENT_TYPE,
        cors=cors,
        framing=NDJSON_FRAMING,
        heartbeat=STREAM_HEARTBEAT,
    )
