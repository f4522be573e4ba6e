"""WebSocket frames made once for every subscriber."""

from __future__ import annotations

import struct

from pushwire.transports.websocket.framing import frame_binary, frame_text, unframe


def test_frames_use_the_shortest_length_encoding() -> None:
    assert frame_text(b"x" * 125)[:2] == b"\x81\x7d"
    assert frame_text(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert frame_binary(b"x" * 65535)[:4] == b"\x82\x7e\xff\xff"
    assert frame_binary(b"x" * 65536)[:10] == b"\x82\x7f" + struct.pack("!Q", 65536)


def test_unframe_takes_back_every_message_of_a_run_of_frames() -> None:
    texts = [b"", b"a" * 125, b"b" * 126, b"c" * 65535, b"d" * 65536]
    run = b"".join(frame_text(t) for t in texts) + frame_binary(b"\x00\xff")
    assert unframe(run) == [*((True, t) for t in texts), (False, b"\x00\xff")]
