"""The `stream` transport (xhr / fetch streaming): one never-ending response, one envelope a
line (NDJSON).

The same lines are what the poll transports return, so both share one framing (a door that
speaks HTTP/1.1 puts each streamed line in a chunk). Heartbeats are empty lines, which clients
skip.
"""

from __future__ import annotations

from typing import Final

from ..envelope import TextFraming
from .http_session import StreamWire

__all__ = ["NDJSON_FRAMING", "NDJSON_STREAM", "STREAM_HEARTBEAT", "NdjsonFraming"]

CONTENT_TYPE: Final = "application/x-ndjson; charset=utf-8"


class NdjsonFraming(TextFraming):
    """One envelope per line."""

    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        return payload + b"\n"


NDJSON_FRAMING: Final = NdjsonFraming()
STREAM_HEARTBEAT: Final = b"\n"
#: `POST E/stream` (the hello as its body): a pushwire.v1 session, an envelope a line.
NDJSON_STREAM: Final = StreamWire("stream", CONTENT_TYPE, NDJSON_FRAMING, STREAM_HEARTBEAT)
