"""An open server-side WebSocket connection (RFC 6455), sans-I/O.

`WebSocketConnection` wraps `websockets`' `ServerProtocol` for the open connection: bytes in,
whole messages out, with reassembly of fragments and fail-fast UTF-8 checking of text, and
each Ping's Pong as an event in stream order (so it goes out before the answer to a message
that completed after the Ping).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Final, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, State
from websockets.server import ServerProtocol

try:  # websockets' C helper; its pure-Python twin is the fallback it ships with
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a websockets build without its C extension
    from websockets.utils import apply_mask

from .deflate import DeflateParams, inflater_bytes
from .framing import frame as make_frame

__all__ = [
    "MAX_REASON",
    "WebSocketClosed",
    "WebSocketConnection",
    "WebSocketEvent",
    "WebSocketMessage",
    "WebSocketPing",
    "WebSocketPong",
    "fit_reason",
]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs more, per message
class WebSocketMessage:
    """A whole message: `str` for text, `bytes` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class WebSocketPing:
    """A Ping arrived: write `pong` (the framed answer, RFC 6455 5.5.2) where this event stands
    among the others, i.e. before answering any message that completed after the Ping."""

    pong: bytes


@dataclass(frozen=True, slots=True)
class WebSocketPong:
    data: bytes


@dataclass(frozen=True, slots=True)
class WebSocketClosed:
    """The closing handshake happened or the connection failed; `code` as RFC 6455 7.1.5.

    `by_peer`: the peer sent a Close frame (it chose to close); False when the connection
    failed (a protocol error, or the TCP stream ended without a Close frame: 1006).
    """

    code: int
    reason: str
    by_peer: bool = False


WebSocketEvent = WebSocketMessage | WebSocketPing | WebSocketPong | WebSocketClosed

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


#: RFC 6455 5.5: a control frame carries at most 125 bytes, the close code takes 2.
MAX_REASON: Final = 123


def fit_reason(reason: str) -> str:
    """`reason` cut to `MAX_REASON` bytes of UTF-8, on a character's boundary."""
    data = reason.encode()
    return reason if len(data) <= MAX_REASON else data[:MAX_REASON].decode(errors="ignore")


class _ServerProtocol(ServerProtocol):
    """`ServerProtocol` with two answers changed, each to what RFC 6455 asks (both were found
    by the Autobahn|Testsuite, cases 5.6, 5.19 and 7.1.5; see docs/benchmarks.md):

    - A Ping is not answered in `data_to_send()` (after everything the caller writes for the
      same read) but reported as a frame event, which `WebSocketConnection` turns into a
      `WebSocketPing` in stream order: 5.5.2 asks for the Pong "as soon as is practical".
    - A Close in the middle of a fragmented message is a normal Close (5.4: control frames
      may be injected between fragments), not a protocol error (1002); the unfinished message
      is dropped.

    `recv_frame` is the hook `websockets` calls for each parsed frame.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            if self.state is OPEN:  # after a Close, sent or received, no Pong
                self.events.append(frame)
            return
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None  # the unfinished message, if any, ends with the Close
        super().recv_frame(frame)


class WebSocketConnection:
    """An open server-side WebSocket connection, sans-I/O.

    Feed `receive_data()` / `receive_eof()`, then act on `events_received()` and write
    `data_to_send()` (an empty bytes object means: close the TCP connection).
    Messages larger than `max_message` fail the connection with 1009 (the limit counts the
    whole message across fragments); invalid UTF-8 in text fails it with 1007 as soon as
    the bad fragment arrives.

    `websockets`' `ServerProtocol` is made only when a frame needs it (a fragment, a Close,
    a frame split across reads, anything invalid) or the connection closes, and from then on
    parses every frame: an idle subscriber, whose traffic is whole messages, Pings and
    Pongs, never has one (about 1.5 KiB saved per connection).

    `deflate`: permessage-deflate was agreed; compressed frames (RSV1) go to `ServerProtocol`
    with its decompressor, which keeps its state between messages only when the client may
    use context takeover, and stops at `max_message` decompressed bytes (1009).
    """

    __slots__ = (
        "_decoder",
        "_deflate",
        "_fast",
        "_max_message",
        "_parts",
        "_protocol",
        "_reported_close",
        "_writes",
    )

    def __init__(self, max_message: int, deflate: DeflateParams | None = None) -> None:
        self._protocol: _ServerProtocol | None = None
        self._deflate = deflate
        self._max_message = max_message
        self._parts: list[bytes] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._reported_close = False
        # Made when needed, not kept empty: an idle connection holds neither list.
        self._fast: list[WebSocketEvent] | None = None  # what the fast path parsed, not taken
        self._writes: list[bytes] | None = None  # Pings sent before the protocol was made

    def _made(self) -> _ServerProtocol:
        protocol = self._protocol
        if protocol is None:
            protocol = self._protocol = _ServerProtocol(state=OPEN, max_size=self._max_message)
            if self._deflate is not None:
                protocol.extensions = [self._deflate.extension()]
        return protocol

    @property
    def state(self) -> State:
        protocol = self._protocol
        return OPEN if protocol is None else protocol.state

    @property
    def is_open(self) -> bool:
        protocol = self._protocol
        return protocol is None or protocol.state is OPEN

    @property
    def incomplete(self) -> bool:
        """A frame or a fragmented message began and has not ended: its bytes are held."""
        protocol = self._protocol
        return self._parts is not None or (
            protocol is not None
            and (protocol.current_size is not None or bool(protocol.reader.buffer))
        )

    @property
    def incomplete_bytes(self) -> int:
        """Bytes held of an unfinished frame or fragmented message."""
        parts, protocol = self._parts, self._protocol
        held = len(protocol.reader.buffer) if protocol is not None else 0
        return held + sum(map(len, parts)) if parts else held

    @property
    def held_bytes(self) -> int:
        """Bytes held for reading (the memory budget): an unfinished frame or fragmented
        message (decompressed, with permessage-deflate), and the decompressor's state."""
        protocol = self._protocol
        if protocol is None:
            return 0
        held = self.incomplete_bytes
        return held + inflater_bytes(protocol.extensions) if self._deflate is not None else held

    def receive_data(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None and self._parts is None:
            # Nothing but whole, simple frames so far: parse those here. Once `ServerProtocol`
            # is made, it parses everything: its reader can be in the middle of a frame with
            # nothing buffered (a header taken, its mask still to come), so its buffer does not
            # say where the next frame begins.
            data = self._receive_simple_frames(data)
            if not data:
                return
        self._made().receive_data(data)

    def _receive_simple_frames(self, data: bytes) -> bytes:
        """Take the leading complete frames that are masked, unfragmented text or binary
        (FIN set, no RSV bit), with a 7- or 16-bit length within `max_message`, and valid
        UTF-8 for text, and the masked Pings and Pongs (FIN set, no RSV bit, at most 125
        bytes); return the rest, from the first frame that is anything else (Close,
        fragment, partial, invalid), for `ServerProtocol` to parse as usual.

        Why: the generator-based general parser costs more per small message than the rest
        of an echo; these frames are most of the traffic, and for them both parsers agree
        (tests/transports/websocket/test_protocol.py feeds the same bytes to both).
        """
        end = len(data)
        offset = 0
        fast = self._fast
        if fast is None:
            fast = self._fast = []
        while end - offset >= 6:
            first = data[offset]
            second = data[offset + 1]
            if second < 0x80:
                break  # not masked: a protocol error
            length = second & 0x7F
            start = offset + 6
            if first == 0x89 or first == 0x8A:  # Ping, Pong
                stop = start + length
                if length > 125 or stop > end:
                    break
                payload = apply_mask(data[start:stop], data[start - 4 : start])
                if first == 0x89:
                    fast.append(WebSocketPing(make_frame(0x8A, payload)))
                else:
                    fast.append(WebSocketPong(payload))
                offset = stop
                continue
            if first != 0x81 and first != 0x82:
                break  # not FIN+text/binary without RSV
            if length == 126:
                if end - offset < 8:
                    break
                length = (data[offset + 2] << 8) | data[offset + 3]
                start = offset + 8
            elif length == 127:
                break
            stop = start + length
            if stop > end or length > self._max_message:
                break
            payload = apply_mask(data[start:stop], data[start - 4 : start])
            if first == 0x82:
                fast.append(WebSocketMessage(payload))
            else:
                try:
                    fast.append(WebSocketMessage(payload.decode()))
                except UnicodeDecodeError:
                    break  # the general path reports it (1007) after the messages before it
            offset = stop
        return data[offset:] if offset else data

    def receive_eof(self) -> None:
        self._made().receive_eof()

    def data_to_send(self) -> list[bytes]:
        writes, protocol = self._writes, self._protocol
        if writes is not None:
            self._writes = None
        if protocol is None:
            return writes if writes is not None else []
        if writes:
            return writes + protocol.data_to_send()
        return protocol.data_to_send()

    @property
    def has_data_to_send(self) -> bool:
        """Whether `data_to_send()` has anything (a Close, the end of the stream)."""
        protocol = self._protocol
        return bool(self._writes) or (protocol is not None and bool(protocol.writes))

    def send_ping(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None:
            if self._writes is None:
                self._writes = []
            self._writes.append(make_frame(0x89, data))
        else:
            protocol.send_ping(data)

    def send_close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 7.1.2), unless it already started. A reason
        too long for a Close frame is cut (`fit_reason`)."""
        protocol = self._made()
        if protocol.state is OPEN:
            protocol.send_close(code, fit_reason(reason))

    def fail(self, code: int, reason: str = "") -> None:
        """Close at once after a Close frame (RFC 6455 7.1.7); the peer's answer is not awaited."""
        protocol = self._made()
        if protocol.state is OPEN:
            protocol.fail(code, fit_reason(reason))

    def events_received(self) -> list[WebSocketEvent]:
        events = self._fast
        if events is None:
            events = []
        else:
            self._fast = None
        protocol = self._protocol
        if protocol is None:
            return events
        frames = protocol.events_received()
        if not frames and protocol.parser_exc is None:
            return events
        for frame in frames:
            if self._reported_close:
                break  # the connection failed or closed: what follows is discarded
            # Started OPEN, ServerProtocol yields frames only (no handshake events).
            self._handle_frame(cast(Frame, frame), events)
        if not self._reported_close and protocol.parser_exc is not None:
            # The parser failed the connection: report what was sent to the peer.
            self._reported_close = True
            sent = protocol.close_sent
            events.append(WebSocketClosed(sent.code if sent else 1006, sent.reason if sent else ""))
        return events

    def _handle_frame(self, frame: Frame, events: list[WebSocketEvent]) -> None:
        opcode = frame.opcode
        data = cast(bytes, frame.data)  # Frame.parse always produces bytes
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin and opcode is Opcode.BINARY:
                events.append(WebSocketMessage(data))
                return
            if frame.fin:
                try:
                    events.append(WebSocketMessage(data.decode()))
                except UnicodeDecodeError as exc:
                    self._invalid_utf8(exc, events)
                return
            self._parts = [data]
            self._decoder = _utf8_decoder() if opcode is Opcode.TEXT else None
            self._check_utf8(data, False, events)
        elif opcode is Opcode.CONT:
            assert self._parts is not None  # ServerProtocol rejects a stray continuation
            self._parts.append(data)
            if not self._check_utf8(data, frame.fin, events):
                return
            if frame.fin:
                payload = b"".join(self._parts)
                text = self._decoder is not None
                self._parts = self._decoder = None
                events.append(WebSocketMessage(payload.decode() if text else payload))
        elif opcode is Opcode.PING:
            events.append(WebSocketPing(make_frame(0x8A, data)))
        elif opcode is Opcode.PONG:
            events.append(WebSocketPong(data))
        elif opcode is Opcode.CLOSE and not self._reported_close:
            self._reported_close = True
            self._parts = self._decoder = None  # a message cut short by the Close is dropped
            received = self._made().close_rcvd
            events.append(
                WebSocketClosed(received.code, received.reason, by_peer=True)
                if received is not None
                else WebSocketClosed(1005, "", by_peer=True)
            )

    def _check_utf8(self, data: bytes, final: bool, events: list[WebSocketEvent]) -> bool:
        if self._decoder is None:
            return True
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            self._invalid_utf8(exc, events)
            return False
        return True

    def _invalid_utf8(self, exc: UnicodeDecodeError, events: list[WebSocketEvent]) -> None:
        # RFC 6455 8.1: a text message that is not valid UTF-8 fails the connection (1007).
        reason = f"invalid UTF-8 in text message at position {exc.start}"
        self._parts = self._decoder = None
        self.fail(1007, reason)
        if not self._reported_close:
            self._reported_close = True
            events.append(WebSocketClosed(1007, reason))
