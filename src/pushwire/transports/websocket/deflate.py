"""permessage-deflate (RFC 7692), sans-I/O: the negotiation, and frames compressed once.

`negotiate_deflate()` reads a client's `Sec-WebSocket-Extensions` offers and picks the first
valid permessage-deflate one (7.1); an offer that is malformed, repeats a parameter, names an
unknown one or gives a value out of range is declined (the next offer is tried; none left:
no compression). The server always answers `server_no_context_takeover`, so each message it
sends is compressed on its own: `DeflateFraming` compresses a channel message once and the
same compressed frame goes to every subscriber with the same negotiated window, as plain
frames do. Client frames are decompressed by `websockets`' `PerMessageDeflate`
(`DeflateParams.extension()`), bounded by `max_message`; what its decompressor holds
(`inflater_bytes`) counts in the memory budget with the connection's other buffers.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from websockets.exceptions import InvalidHeader
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.headers import parse_extension

from ...envelope import (
    channel_message_fields,
    direct_message_fields,
    encode_binary_frame_payload,
    encode_text,
)
from ...message import Data, Message
from .framing import frame, frame_binary, frame_text

__all__ = [
    "INFLATER_BYTES",
    "DeflateFraming",
    "DeflateParams",
    "deflate_framing",
    "inflater_bytes",
    "negotiate_deflate",
]

NAME: Final = "permessage-deflate"
#: RFC 7692 7.1.2: a window size is 8 to 15 bits, a decimal integer without leading zeros.
_WINDOW_BITS: Final = {str(bits): bits for bits in range(8, 16)}
_FLAGS: Final = frozenset({"server_no_context_takeover", "client_no_context_takeover"})
#: What one connection's decompressor holds once it has inflated a message: zlib's inflate
#: state (about 7 KiB) and its window, 2^15 bytes (the decompressor reads any client window,
#: so it is made with the largest). zlib does not say; this is its allocation, rounded up.
INFLATER_BYTES: Final = 40 * 1024


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What was agreed with one client.

    `server_max_window_bits`: the largest LZ77 window our frames may use (15 unless the client
    asked for less). `client_no_context_takeover`: the client compresses each message on its
    own, so no decompressor is kept between its messages. `response`: the header value.
    """

    client_no_context_takeover: bool
    server_max_window_bits: int
    response: str

    def extension(self) -> PerMessageDeflate:
        """The incoming side: decompresses the client's frames (RSV1), within `max_size`.

        Our outgoing frames are never made by it (the `DeflateFraming` makes them); a
        decompressor with a 15-bit window reads any client window size."""
        return PerMessageDeflate(
            remote_no_context_takeover=self.client_no_context_takeover,
            local_no_context_takeover=True,
            remote_max_window_bits=15,
            local_max_window_bits=max(9, self.server_max_window_bits),
        )


def inflater_bytes(extensions: Sequence[object]) -> int:
    """Bytes the decompressor among a connection's `extensions` holds (0: none made yet).

    `PerMessageDeflate` makes its decompressor at once when the client keeps its context,
    else at the first compressed message, and keeps it; `WebSocketConnection` makes the
    extension only when a frame needs its general parser (a compressed frame always does)."""
    for extension in extensions:
        if isinstance(extension, PerMessageDeflate) and getattr(extension, "decoder", None):
            return INFLATER_BYTES
    return 0


def _accept(params: list[tuple[str, str | None]]) -> DeflateParams | None:
    """The agreement for one offer, or None to decline it (RFC 7692 7.1)."""
    seen: set[str] = set()
    client_no_context_takeover = False
    server_bits = 15
    for name, value in params:
        if name in seen:
            return None  # 7: a parameter given twice
        seen.add(name)
        if name in _FLAGS:
            if value is not None:
                return None
            client_no_context_takeover |= name == "client_no_context_takeover"
        elif name == "server_max_window_bits":
            if value not in _WINDOW_BITS:
                return None
            server_bits = _WINDOW_BITS[value]
        elif name == "client_max_window_bits":
            if value is not None and value not in _WINDOW_BITS:
                return None
            # A hint: we read any window up to 15 bits, so the client may keep its own.
        else:
            return None  # a parameter RFC 7692 does not define for an offer
    response = [NAME, "server_no_context_takeover"]
    if client_no_context_takeover:
        response.append("client_no_context_takeover")
    if "server_max_window_bits" in seen:
        response.append(f"server_max_window_bits={server_bits}")
    return DeflateParams(client_no_context_takeover, server_bits, "; ".join(response))


def negotiate_deflate(values: list[str]) -> DeflateParams | None:
    """The first acceptable permessage-deflate offer among the `Sec-WebSocket-Extensions`
    header `values`, or None (no offer, or none acceptable, or a header that does not parse:
    the connection goes on without compression)."""
    offers: list[tuple[str, Sequence[tuple[str, str | None]]]] = []
    try:
        for value in values:
            offers.extend(parse_extension(value))
    except InvalidHeader:
        return None
    for name, params in offers:
        if name.lower() == NAME:
            accepted = _accept([(param.lower(), value) for param, value in params])
            if accepted is not None:
                return accepted
    return None


class DeflateFraming:
    """A WebSocket framing (raw or pushwire.v1 envelopes, as `envelope` says) whose frames are
    compressed (RSV1, RFC 7692 7.2.1) when the payload has at least `threshold` bytes and
    compressing makes it smaller. Each message is compressed on its own, with a window of at
    most `window_bits`: valid for every client that agreed to that window, so one framing
    object (from `deflate_framing`) serves them all and its frames are shared."""

    __slots__ = ("envelope", "threshold", "window_bits")

    def __init__(self, envelope: bool, window_bits: int, threshold: int) -> None:
        self.envelope = envelope
        self.window_bits = window_bits
        self.threshold = threshold

    def frame_message(self, message: Message) -> bytes:
        if self.envelope:
            fields = channel_message_fields(message.channel, message.epoch, message.offset)
            return self._frame(fields, message.data)
        return self._frame_data(message.data)

    def frame_direct(self, data: Data, epoch: str | None = None, offset: int = 0) -> bytes:
        if self.envelope:
            return self._frame(direct_message_fields(epoch, offset), data)
        return self._frame_data(data)

    def frame_control(self, fields: dict[str, Any]) -> bytes:
        return self._text(encode_text(fields)) if self.envelope else b""

    def _frame(self, fields: dict[str, Any], data: Data) -> bytes:
        if isinstance(data, bytes):
            return self._binary(encode_binary_frame_payload(fields, data))
        return self._text(encode_text(fields, data))

    def _frame_data(self, data: Data) -> bytes:
        return self._binary(data) if isinstance(data, bytes) else self._text(data.encode())

    def _text(self, payload: bytes) -> bytes:
        compressed = self._compress(payload)
        return frame_text(payload) if compressed is None else frame(0xC1, compressed)

    def _binary(self, payload: bytes) -> bytes:
        compressed = self._compress(payload)
        return frame_binary(payload) if compressed is None else frame(0xC2, compressed)

    def _compress(self, payload: bytes) -> bytes | None:
        """`payload` compressed as RFC 7692 7.2.1 says (a sync flush, its last four bytes
        00 00 ff ff removed), or None when it is under the threshold or does not shrink."""
        length = len(payload)
        if length < self.threshold:
            return None
        # A window larger than the message buys nothing and costs memory to set up: use the
        # smallest that holds it, within what was agreed. zlib cannot compress with 8 bits
        # (it makes 9 of it): under an 8-bit agreement only a message of at most 256 bytes,
        # whose back-references cannot reach further, is compressed.
        bits = min(self.window_bits, max(9, (length - 1).bit_length()))
        if bits == 8:
            if length > 256:
                return None
            bits = 9
        # memLevel 4 for the common short message: zlib's hash table and literal buffer at a
        # sixteenth of the default size (a few KiB to set up, not ~200), the output the same.
        memory = 4 if length <= 16384 else 8
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, memory)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4] if len(data) - 4 < length else None


_FRAMINGS: dict[tuple[bool, int, int], DeflateFraming] = {}


def deflate_framing(envelope: bool, window_bits: int, threshold: int) -> DeflateFraming:
    """The compressed framing for these settings: the same object for every call with them,
    so the hub frames a channel message once for all the subscribers that share it."""
    key = (envelope, window_bits, threshold)
    found = _FRAMINGS.get(key)
    if found is None:
        found = _FRAMINGS[key] = DeflateFraming(envelope, window_bits, threshold)
    return found
