"""permessage-deflate (RFC 7692) without sockets: the negotiation, compressed frames made once,
and client frames decompressed within `max_message`."""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
import zlib
from typing import Any

import pytest

from pushwire import Hub
from pushwire.message import Message
from pushwire.transports.websocket.deflate import (
    DeflateParams,
    deflate_framing,
    negotiate_deflate,
)
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING
from pushwire.transports.websocket.protocol import (
    WebSocketClosed,
    WebSocketConnection,
    WebSocketMessage,
)
from tests.helpers import RecordingTransport

MASK = b"\x37\xfa\x21\x3d"
CHAT = json.dumps(
    {
        "user": "alice",
        "room": "general",
        "text": "Are we still on for the design review at three? I put the notes in the doc.",
        "sent_at": "2026-12-06T12:52:05Z",
        "reactions": [],
    }
)


# -- negotiation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", "permessage-deflate; server_no_context_takeover"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10",
        ),
        (
            'permessage-deflate; server_max_window_bits="9"',
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
        ),
        # An invalid first offer is declined; the next one is taken.
        (
            "permessage-deflate; server_max_window_bits=16, permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
        ),
        ("x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover", None),
    ],
)
def test_the_first_valid_offer_is_accepted_with_server_no_context_takeover(
    offer: str, response: str | None
) -> None:
    agreed = negotiate_deflate([offer])
    assert agreed is not None
    expected = response or "permessage-deflate; server_no_context_takeover"
    assert agreed.response == expected


@pytest.mark.parametrize(
    "offer",
    [
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",  # no leading zeros
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; mystery",
        "permessage-deflate; ;",  # does not parse: no extension at all
    ],
)
def test_an_invalid_offer_is_declined(offer: str) -> None:
    assert negotiate_deflate([offer]) is None


# -- outgoing frames -------------------------------------------------------------------------


def inflate(frame: bytes) -> tuple[int, bytes]:
    """The first byte and the decompressed payload of one unmasked compressed server frame."""
    length = frame[1]
    start = 2
    if length == 126:
        (length,) = struct.unpack("!H", frame[2:4])
        start = 4
    payload = frame[start:]
    assert len(payload) == length
    return frame[0], zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")


def test_a_chat_message_is_compressed_and_a_short_one_is_not() -> None:
    framing = deflate_framing(True, 15, 128)
    frame = framing.frame_message(Message("room", "e1", 7, CHAT))
    first, payload = inflate(frame)
    assert first == 0xC1  # FIN, RSV1, text
    assert json.loads(payload) == {
        "type": "message",
        "channel": "room",
        "epoch": "e1",
        "offset": 7,
        "data": CHAT,
    }
    assert len(frame) < len(ENVELOPE_FRAMING.frame_message(Message("room", "e1", 7, CHAT)))
    short = Message("room", "e1", 8, "hi")
    assert framing.frame_message(short) == ENVELOPE_FRAMING.frame_message(short)
    raw = deflate_framing(False, 15, 128)
    assert inflate(raw.frame_message(Message("room", "e1", 9, CHAT.encode())))[0] == 0xC2


def test_what_does_not_shrink_goes_out_plain() -> None:
    noise = os.urandom(1000)
    frame = deflate_framing(False, 15, 128).frame_direct(noise)
    assert frame[0] == 0x82 and frame.endswith(noise)


def test_under_an_8_bit_window_only_messages_of_at_most_256_bytes_are_compressed() -> None:
    framing = deflate_framing(False, 8, 16)
    small, big = "ab" * 100, "ab" * 1000
    assert inflate(framing.frame_direct(small)) == (0xC1, small.encode())
    assert framing.frame_direct(big)[0] == 0x81
    # Decodable with the 8-bit window agreed (a decompressor of 256 bytes' window).
    payload = framing.frame_direct(small)[2:]
    assert zlib.decompressobj(wbits=-9).decompress(payload + b"\x00\x00\xff\xff") == small.encode()


async def test_a_channel_message_is_compressed_once_for_every_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[Any] = []
    compressobj = zlib.compressobj

    def counting(*args: Any) -> Any:
        made.append(args)
        return compressobj(*args)

    monkeypatch.setattr(zlib, "compressobj", counting)
    hub = Hub()
    framing = deflate_framing(True, 15, 128)
    transports = [RecordingTransport(framing) for _ in range(100)]
    plain = RecordingTransport(ENVELOPE_FRAMING)
    for transport in [*transports, plain]:
        hub.channels.subscribe(hub.lifecycle.open(transport), "room")
    for _ in range(3):
        await hub.publish("room", CHAT)
        hub.channels.flush()
    assert len(made) == 3  # one compression a message, for 100 subscribers
    assert hub.stats.frames_encoded == 6  # compressed and plain framings, three messages
    for transport in transports:
        assert all(a is b for a, b in zip(transport.written, transports[0].written, strict=True))
    assert inflate(transports[0].written[0])[0] == 0xC1
    assert plain.written[0][0] == 0x81


# -- incoming frames -------------------------------------------------------------------------


def masked(first_byte: int, payload: bytes) -> bytes:
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        head = bytes([first_byte, 0x80 | length])
    elif length < 65536:
        head = struct.pack("!BBH", first_byte, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first_byte, 0x80 | 127, length)
    return head + MASK + body


def params(client_no_context_takeover: bool) -> DeflateParams:
    return DeflateParams(client_no_context_takeover, 15, "permessage-deflate")


def test_compressed_client_messages_with_context_takeover() -> None:
    compressor = zlib.compressobj(wbits=-15)
    connection = WebSocketConnection(1024, params(False))
    for text in ["hello hello hello", "hello hello hello again"]:
        data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        connection.receive_data(masked(0xC1, data[:-4]))
        assert connection.events_received() == [WebSocketMessage(text)]
    connection.receive_data(masked(0x82, b"plain"))  # uncompressed messages may come between
    assert connection.events_received() == [WebSocketMessage(b"plain")]


def test_compressed_fragments_without_context_takeover() -> None:
    connection = WebSocketConnection(1024, params(True))
    for _ in range(2):
        compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(b"\x00" * 500) + compressor.flush(zlib.Z_SYNC_FLUSH)
        data = data[:-4]
        connection.receive_data(masked(0x42, data[:3]) + masked(0x80, data[3:]))
        assert connection.events_received() == [WebSocketMessage(b"\x00" * 500)]


def test_a_compressed_frame_without_the_extension_is_a_protocol_error() -> None:
    connection = WebSocketConnection(1024)
    connection.receive_data(masked(0xC1, b"\x01\x02\x03"))
    assert connection.events_received() == [WebSocketClosed(1002, "reserved bits must be 0")]


def test_a_zip_bomb_is_closed_with_1009_without_inflating_it() -> None:
    max_message = 64 * 1024
    bomb = zlib.compressobj(wbits=-15)
    data = bomb.compress(b"\x00" * (64 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    frame = masked(0xC2, data[:-4])
    assert len(frame) < max_message  # 64 MiB of zeros in about 64 KiB
    connection = WebSocketConnection(max_message, params(False))
    tracemalloc.start()
    try:
        connection.receive_data(frame)
        events = connection.events_received()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [type(event) for event in events] == [WebSocketClosed]
    assert isinstance(events[0], WebSocketClosed) and events[0].code == 1009
    # The frame itself (and its unmasked copy) plus at most max_message of output.
    assert peak < 2 * len(frame) + 2 * max_message + 64 * 1024
