"""pushwire.v1 envelopes: decode what clients send, encode what the server sends. Pure.

An envelope is a JSON object with a "type". Its application data travels as `"data"` (text),
`"data64"` (binary, base64) or, over WebSocket, as a binary frame: JSON header, byte 0x0A,
raw bytes (docs/protocol.md "Data").
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .errors import BadRequest
from .message import Data, Message

__all__ = [
    "SUBPROTOCOL",
    "Envelope",
    "TextFraming",
    "decode",
    "encode_binary_frame_payload",
    "encode_text",
]

SUBPROTOCOL: Final = "pushwire.v1"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded client envelope: its `type`, its other fields, and its data (if any)."""

    type: str
    fields: dict[str, Any]
    data: Data | None


def decode(frame: Data) -> Envelope:
    """Decode one envelope from a WebSocket text frame (str) or binary frame (bytes).

    Raises:
        BadRequest: not JSON, not an object, no string "type", or invalid data64.
    """
    data: Data | None = None
    if isinstance(frame, bytes):
        header, newline, payload = frame.partition(b"\n")
        if not newline:
            raise BadRequest("binary envelope without the newline that ends its header")
        data = payload
    else:
        header = frame.encode()
    try:
        fields = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"envelope is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise BadRequest("envelope must be a JSON object")
    kind = fields.get("type")
    if not isinstance(kind, str):
        raise BadRequest('envelope has no string "type"')
    if data is None:
        text = fields.get("data")
        if isinstance(text, str):
            data = text
        elif "data64" in fields:
            encoded = fields["data64"]
            if not isinstance(encoded, str):
                raise BadRequest('"data64" must be a base64 string')
            try:
                data = base64.b64decode(encoded, validate=True)
            except ValueError:  # binascii.Error, or a character that is not ASCII
                raise BadRequest('"data64" is not valid base64') from None
        elif text is not None:
            raise BadRequest('"data" must be a string (binary goes in "data64")')
    return Envelope(kind, fields, data)


def encode_text(fields: dict[str, Any], data: Data | None = None) -> bytes:
    """An envelope as UTF-8 JSON; binary data goes into "data64" (text-only transports)."""
    if data is None:
        return orjson.dumps(fields)
    if isinstance(data, str):
        return orjson.dumps({**fields, "data": data})
    return orjson.dumps({**fields, "data64": base64.b64encode(data).decode("ascii")})


def encode_binary_frame_payload(fields: dict[str, Any], data: bytes) -> bytes:
    """The payload of a binary WebSocket frame: JSON header, newline, raw bytes."""
    return orjson.dumps(fields) + b"\n" + data


def channel_message_fields(channel: str, epoch: str, offset: int) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "epoch": epoch, "offset": offset}


def direct_message_fields(epoch: str | None, offset: int) -> dict[str, Any]:
    """A direct message's envelope without its data: with its place in the user's inbox,
    or, without an `epoch`, a message to one session only (an echo)."""
    if epoch is None:
        return {"type": "message"}
    return {"type": "message", "epoch": epoch, "offset": offset}


class TextFraming:
    """pushwire.v1 envelopes as UTF-8 JSON (binary as data64), each wrapped for its wire.

    A transport's framing subclasses this and says how one envelope goes on the wire
    (`wrap`). Channel messages are framed once per framing by the hub and shared.
    """

    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def frame_message(self, message: Message) -> bytes:
        fields = channel_message_fields(message.channel, message.epoch, message.offset)
        return self.wrap(encode_text(fields, message.data))

    def frame_direct(self, data: Data, epoch: str | None = None, offset: int = 0) -> bytes:
        return self.wrap(encode_text(direct_message_fields(epoch, offset), data))

    def frame_control(self, fields: dict[str, Any]) -> bytes:
        return self.wrap(encode_text(fields))
