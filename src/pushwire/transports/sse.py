"""The `sse` transport: `text/event-stream` (the standard form of HTTP streaming).

Two framings:

- envelope (pushwire.js): each pushwire.v1 envelope is one event, `data: <json>`;
- raw (`/sse/<channel>`, a plain `EventSource` with no library): each channel message is one
  event whose `data` is the message text, with `id: <epoch>:<offset>` so the browser's
  automatic reconnection sends `Last-Event-ID` and resumes where it stopped. A binary message
  is an event of type `binary` whose data is base64.

Heartbeats are SSE comments (`: hb`), which EventSource ignores.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

from ..envelope import TextFraming
from ..http.response import chunk
from ..message import Data, Message

__all__ = ["RAW_SSE_FRAMING", "SSE_FRAMING", "SSE_HEARTBEAT", "parse_last_event_id"]


class SseFraming(TextFraming):
    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        # orjson never emits a raw newline, so one data line holds the whole envelope.
        return chunk(b"data: " + payload + b"\n\n")


def _event(data: Data, event_id: str | None) -> bytes:
    lines = [] if event_id is None else [b"id: " + event_id.encode()]
    if isinstance(data, bytes):
        lines.append(b"event: binary")
        lines.append(b"data: " + base64.b64encode(data))
    else:
        # A data line ends at CR, LF or CRLF; each line of the text becomes one data line.
        text = data.replace("\r\n", "\n").replace("\r", "\n")
        lines.extend(b"data: " + line.encode() for line in text.split("\n"))
    return chunk(b"\n".join(lines) + b"\n\n")


class RawSseFraming:
    """Raw mode: message data as event data, the channel position as the event id."""

    __slots__ = ()

    def frame_message(self, message: Message) -> bytes:
        return _event(message.data, f"{message.epoch}:{message.offset}")

    def frame_direct(self, seq: int, data: Data) -> bytes:
        return _event(data, None)

    def frame_control(self, fields: dict[str, Any]) -> bytes:
        if fields.get("type") != "gap":
            return b""
        # History no longer reaches back to Last-Event-ID: an event of type "gap" says so.
        return chunk(b"event: gap\ndata: " + orjson.dumps(fields) + b"\n\n")


def parse_last_event_id(value: str | None) -> tuple[str, int] | None:
    """`epoch:offset` from a `Last-Event-ID` header, or None when absent or malformed."""
    if not value:
        return None
    epoch, _, offset = value.strip().rpartition(":")
    if not epoch or not offset.isdigit():
        return None
    return epoch, int(offset)


SSE_FRAMING: Final = SseFraming()
RAW_SSE_FRAMING: Final = RawSseFraming()
SSE_HEARTBEAT: Final = chunk(b": hb\n\n")
