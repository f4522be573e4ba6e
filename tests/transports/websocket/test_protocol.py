"""The open WebSocket connection without sockets: literal bytes in, events and bytes out."""

from __future__ import annotations

import random
import struct

import pytest

from pushwire.transports.websocket.protocol import (
    WebSocketClosed,
    WebSocketConnection,
    WebSocketMessage,
    WebSocketPing,
    WebSocketPong,
)

MASK = b"\x37\xfa\x21\x3d"


def masked(first_byte: int, payload: bytes) -> bytes:
    """A client frame under 126 bytes with the RFC 6455 5.7 example mask."""
    assert len(payload) < 126
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([first_byte, 0x80 | len(payload)]) + MASK + body


def test_a_masked_text_frame_becomes_a_text_message() -> None:
    # RFC 6455 5.7: a single-frame masked text message "Hello".
    connection = WebSocketConnection(max_message=1024)
    connection.receive_data(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
    assert connection.events_received() == [WebSocketMessage("Hello")]


def test_fragments_are_joined_and_binary_stays_bytes() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.receive_data(masked(0x02, b"\x00\x01") + masked(0x80, b"\x02"))
    assert connection.events_received() == [WebSocketMessage(b"\x00\x01\x02")]


def test_a_ping_is_answered_with_a_pong_and_a_pong_is_reported() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.receive_data(masked(0x89, b"hi") + masked(0x8A, b"yo"))
    assert connection.events_received() == [WebSocketPing(b"\x8a\x02hi"), WebSocketPong(b"yo")]
    assert connection.data_to_send() == []


def test_the_pong_stands_in_stream_order_between_the_messages() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.receive_data(
        masked(0x81, b"one")
        + masked(0x01, b"tw")
        + masked(0x89, b"hi")
        + masked(0x80, b"o")
        + masked(0x89, b"")
        + masked(0x82, b"3")
    )
    assert connection.events_received() == [
        WebSocketMessage("one"),
        WebSocketPing(b"\x8a\x02hi"),
        WebSocketMessage("two"),
        WebSocketPing(b"\x8a\x00"),
        WebSocketMessage(b"3"),
    ]


def test_a_close_between_fragments_closes_normally_and_drops_the_message() -> None:
    connection = WebSocketConnection(max_message=1024)
    close = struct.pack("!H", 1000) + b"bye"
    connection.receive_data(masked(0x01, b"cut") + masked(0x88, close) + masked(0x80, b"off"))
    assert connection.events_received() == [WebSocketClosed(1000, "bye", by_peer=True)]
    assert connection.data_to_send() == [b"\x88\x05" + close, b""]


def test_no_pong_once_our_close_is_sent() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.send_close(1001, "going away")
    connection.data_to_send()
    connection.receive_data(masked(0x89, b"hi"))
    assert connection.events_received() == []
    assert connection.data_to_send() == []


def test_invalid_utf8_fails_with_1007_and_stops_reading() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.receive_data(masked(0x81, b"a\xff") + masked(0x81, b"later"))
    reason = "invalid UTF-8 in text message at position 1"
    assert connection.events_received() == [WebSocketClosed(1007, reason)]
    close_frame = b"\x88" + bytes([2 + len(reason)]) + struct.pack("!H", 1007) + reason.encode()
    assert connection.data_to_send() == [close_frame, b""]


def test_a_message_over_the_limit_fails_with_1009() -> None:
    connection = WebSocketConnection(max_message=4)
    connection.receive_data(masked(0x82, b"12345"))
    events = connection.events_received()
    assert events == [WebSocketClosed(1009, "frame with 5 bytes exceeds limit of 4 bytes")]


def test_the_close_handshake_echoes_the_code() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.receive_data(masked(0x88, struct.pack("!H", 1000) + b"done"))
    assert connection.events_received() == [WebSocketClosed(1000, "done", by_peer=True)]
    assert connection.data_to_send() == [b"\x88\x06\x03\xe8done", b""]


def test_an_end_of_stream_without_a_close_frame_is_not_the_peers_choice() -> None:
    connection = WebSocketConnection(max_message=1024)
    connection.receive_eof()
    assert connection.events_received() == [WebSocketClosed(1006, "", by_peer=False)]


# -- the fast path for simple frames agrees with the general parser --------------------------


class _GeneralParserOnly(WebSocketConnection):
    """The reference: every byte goes through `ServerProtocol`, as before the fast path."""

    def receive_data(self, data: bytes) -> None:
        self._made().receive_data(data)


def _client_frame(rng: random.Random, first: int, payload: bytes, masked_: bool = True) -> bytes:
    length = len(payload)
    mask_bit = 0x80 if masked_ else 0
    if length < 126 and rng.random() < 0.9:
        head = bytes([first, mask_bit | length])
    elif length < 65536 and rng.random() < 0.9:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked_:
        return head + payload
    mask = rng.randbytes(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _random_frame(rng: random.Random) -> bytes:
    kind = rng.choices(
        [
            "text",
            "binary",
            "fragmented",
            "ping",
            "pong",
            "close",
            "bad-utf8",
            "unmasked",
            "rsv",
            "big",
            "split-utf8",
        ],
        weights=[30, 20, 6, 4, 3, 1, 1, 1, 1, 1, 2],
    )[0]
    size = rng.choice([0, 1, 5, 64, 125, 126, 200, 1000])
    if kind == "text":
        return _client_frame(rng, 0x81, "é€x"[rng.randrange(3)].encode() * (size // 3))
    if kind == "binary":
        return _client_frame(rng, 0x82, rng.randbytes(size))
    if kind == "fragmented":
        text = "añb€" * (size // 4 + 1)
        raw = text.encode()
        cut = rng.randrange(len(raw) + 1)
        return _client_frame(rng, 0x01, raw[:cut]) + _client_frame(rng, 0x80, raw[cut:])
    if kind == "split-utf8":  # a fragment boundary inside a character
        raw = "€".encode()
        return _client_frame(rng, 0x01, raw[:1]) + _client_frame(rng, 0x80, raw[1:])
    if kind == "ping":
        return _client_frame(rng, 0x89, rng.randbytes(min(size, 125)))
    if kind == "pong":
        return _client_frame(rng, 0x8A, rng.randbytes(min(size, 125)))
    if kind == "close":
        return _client_frame(rng, 0x88, struct.pack("!H", 1000) + b"bye")
    if kind == "bad-utf8":
        return _client_frame(rng, 0x81, b"ok\xc3\x28")
    if kind == "unmasked":
        return _client_frame(rng, 0x81, b"plain", masked_=False)
    if kind == "rsv":
        return _client_frame(rng, 0xC1, b"compressed?")
    return _client_frame(rng, 0x82, bytes(3000))  # over the 2,000-byte bound below: 1009


def _run(connection: WebSocketConnection, chunks: list[bytes]) -> tuple[list[object], bytes]:
    events: list[object] = []
    written = b""
    for chunk in chunks:
        connection.receive_data(chunk)
        events.extend(connection.events_received())
        written += b"".join(connection.data_to_send())
    return events, written


@pytest.mark.parametrize("seed", range(300))
def test_the_fast_path_and_the_general_parser_agree(seed: int) -> None:
    rng = random.Random(seed)
    stream = b"".join(_random_frame(rng) for _ in range(rng.randrange(1, 12)))
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 6))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    fast = _run(WebSocketConnection(max_message=2000), chunks)
    general = _run(_GeneralParserOnly(max_message=2000), chunks)
    assert fast == general


def test_the_fast_path_takes_several_messages_from_one_read() -> None:
    connection = WebSocketConnection(max_message=1000)
    connection.receive_data(masked(0x81, b"one") + masked(0x82, b"two") + masked(0x81, b"thr"))
    assert connection.events_received() == [
        WebSocketMessage("one"),
        WebSocketMessage(b"two"),
        WebSocketMessage("thr"),
    ]
    assert connection.events_received() == []


def test_a_close_reason_too_long_for_a_frame_is_cut_on_a_character() -> None:
    connection = WebSocketConnection(max_message=1024)
    reason = "é" * 100  # 200 bytes of UTF-8: over the 123 a Close frame holds
    connection.send_close(4101, reason)
    [frame] = connection.data_to_send()
    assert frame[:2] == b"\x88\x7c" and frame[2:4] == struct.pack("!H", 4101)
    assert frame[4:].decode() == "é" * 61  # 122 bytes: the 62nd would split a character


def test_what_an_unfinished_message_holds_is_counted_for_the_memory_budget() -> None:
    connection = WebSocketConnection(max_message=1024)
    assert connection.incomplete_bytes == 0
    connection.receive_data(masked(0x02, b"x" * 100))  # a first fragment: kept
    connection.events_received()
    assert connection.incomplete_bytes >= 100
    frame = masked(0x80, b"y" * 50)
    connection.receive_data(frame[:20])  # and half a frame
    assert connection.incomplete_bytes > 100  # (less its header, parsed already)
    connection.receive_data(frame[20:])
    assert connection.events_received() == [WebSocketMessage(b"x" * 100 + b"y" * 50)]
    assert connection.incomplete_bytes == 0


def masked_with(mask: bytes, first_byte: int, payload: bytes) -> bytes:
    """A client frame under 126 bytes with `mask`."""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([first_byte, 0x80 | len(payload)]) + mask + body


@pytest.mark.parametrize("first_byte", [0x81, 0x82, 0x89, 0x8A])
def test_a_frame_cut_after_its_first_two_bytes_is_read_whole(first_byte: int) -> None:
    # The general parser takes a frame's first two bytes and waits for its mask with nothing
    # buffered. A mask that starts like a simple frame's header (here 0x81/0x82/0x89/0x8A,
    # then a masked length) must still be read as the mask, not as the next frame.
    mask = bytes([first_byte, 0x85, 0x00, 0x00])
    wire = masked_with(mask, 0x81, b"Hello") + masked(0x82, b"next")
    connection = WebSocketConnection(max_message=1024)
    events: list[object] = []
    for piece in (wire[:2], wire[2:]):
        connection.receive_data(piece)
        events += connection.events_received()
    assert events == [WebSocketMessage("Hello"), WebSocketMessage(b"next")]


def test_a_reserved_bit_frame_cut_after_its_first_two_bytes_fails_with_1002() -> None:
    # A continuation frame with RSV2 set, cut after its header: its mask (0x82 0xAA...) must
    # not be taken for a binary frame's header; the connection fails on the reserved bit.
    wire = bytes([0x20, 0x80]) + b"\x82\xaa\x00\x00" + masked(0x81, b"after")
    connection = WebSocketConnection(max_message=1024)
    events: list[object] = []
    for piece in (wire[:2], wire[2:]):
        connection.receive_data(piece)
        events += connection.events_received()
    assert [type(e) for e in events] == [WebSocketClosed]
    closed = events[0]
    assert isinstance(closed, WebSocketClosed) and closed.code == 1002
