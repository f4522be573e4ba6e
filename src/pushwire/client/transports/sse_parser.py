"""A `text/event-stream` parser as the HTML standard's EventSource reads one ("Server-sent
events", parsing an event stream), sans I/O: bytes in, events out.

Lines end in CRLF, LF or CR, also when the two bytes of a CRLF arrive in different chunks. A
leading byte order mark is skipped. `data` lines of one event are joined with LF; `event` names
its type (default `message`); `id` sets the last event id, kept for the events after it
(one holding NUL is ignored); `retry` sets the reconnection time in milliseconds (ASCII digits
only); a line starting with `:` is a comment (a heartbeat); other fields are ignored. An event
without data is not dispatched. Bytes that are not UTF-8 read as U+FFFD.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Final

from ..errors import ConnectionLost

__all__ = ["SseEvent", "SseParser"]

_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its `type`, its `data` (lines joined with LF) and the last event
    id at that point (`""`: none)."""

    type: str
    data: str
    last_event_id: str = ""


class SseParser:
    """Feed it with `receive_data()`; take what is complete with `events_received()`.

    Args:
        max_event: characters one line, or one event's data, may hold; beyond it
            `receive_data()` raises `ConnectionLost(1009)` (the stream cannot be trusted on).
    """

    def __init__(self, max_event: int) -> None:
        self.max_event = max_event
        #: The reconnection time the stream asked for, in milliseconds (None: not said).
        self.retry: int | None = None
        #: The last event id seen (sent back as `Last-Event-ID` by a reconnecting client).
        self.last_event_id = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._line = ""  # the current line, not ended yet
        self._after_cr = False  # the last character was a CR: a LF right after it is its end
        self._started = False  # past the optional byte order mark
        self._type = ""
        self._data: list[str] = []
        self._size = 0
        self._events: list[SseEvent] = []

    def receive_data(self, data: bytes) -> None:
        """Parse `data`, the next bytes of the stream.

        Raises:
            ConnectionLost: a line or an event's data over `max_event` characters (1009).
        """
        text = self._decoder.decode(data)
        if not self._started and text:
            self._started = True
            text = text.removeprefix(_BOM)
        start = 0
        if self._after_cr and text.startswith("\n"):
            start = 1  # the LF of a CRLF split across two chunks
        self._after_cr = False
        end = len(text)
        while start < end:
            cr, lf = text.find("\r", start), text.find("\n", start)
            stop = min(i for i in (cr, lf, end) if i >= 0)
            self._line += text[start:stop]
            if len(self._line) > self.max_event:
                raise ConnectionLost(1009, f"sse: a line over {self.max_event} characters")
            if stop == end:
                break
            self._end_line()
            if text[stop] == "\r":
                if stop + 1 == end:
                    self._after_cr = True
                    break
                if text[stop + 1] == "\n":
                    stop += 1
            start = stop + 1

    def events_received(self) -> list[SseEvent]:
        """The events dispatched since the last call, in order."""
        events, self._events = self._events, []
        return events

    def _end_line(self) -> None:
        line, self._line = self._line, ""
        if not line:
            self._dispatch()
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._size > self.max_event:
                raise ConnectionLost(1009, f"sse: an event over {self.max_event} characters")
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> None:
        data, kind = self._data, self._type or "message"
        self._data, self._type, self._size = [], "", 0
        if data:
            self._events.append(SseEvent(kind, "\n".join(data), self.last_event_id))
