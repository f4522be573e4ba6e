"""The `stream` transport (xhr / fetch streaming): one chunked response, one envelope a line.

The same NDJSON lines, without chunk framing, are what the poll transports return.
Heartbeats are empty lines, which clients skip.
"""

from __future__ import annotations

from typing import Final

from ..envelope import TextFraming
from ..http.response import chunk

__all__ = ["NDJSON_FRAMING", "STREAM_FRAMING", "STREAM_HEARTBEAT", "StreamFraming"]


class NdjsonFraming(TextFraming):
    """One envelope per line (poll responses join these lines)."""

    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        return payload + b"\n"


class StreamFraming(TextFraming):
    """One envelope per line, each line one HTTP/1.1 chunk, flushed as it is written."""

    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        return chunk(payload + b"\n")


NDJSON_FRAMING: Final = NdjsonFraming()
STREAM_FRAMING: Final = StreamFraming()
STREAM_HEARTBEAT: Final = chunk(b"\n")
