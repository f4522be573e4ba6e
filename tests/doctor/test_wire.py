"""The doctor's wire side without a socket: URLs, and envelopes cut out of streamed bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pushwire.doctor.wire import Events, Target


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def test_a_url_gives_host_port_and_the_path_pushwire_is_mounted_at() -> None:
    target = Target.parse("https://rt.example.com/realtime/")
    assert (target.secure, target.host, target.port, target.base) == (
        True,
        "rt.example.com",
        443,
        "/realtime",
    )
    assert target.context is not None
    assert target.ws_url("/echo") == "wss://rt.example.com/realtime/echo"
    plain = Target.parse("http://127.0.0.1:8000")
    assert plain.context is None
    assert plain.ws_url("/echo") == "ws://127.0.0.1:8000/echo"


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com:8000", "http:///path"])
def test_a_url_that_is_not_http_or_https_with_a_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL must be http://host"):
        Target.parse(url)


async def test_sse_events_are_taken_whole_across_pieces_and_comments_skipped() -> None:
    pieces = (
        b"retry: 2000\n\nda",
        b'ta: {"type":"welcome","session":"s"}\n',
        b'\n: hb\n\ndata: {"type":"message",\ndata: "data":"x"}\n\n',
    )
    events = Events("sse", _pieces(*pieces))
    assert await events.next() == {"type": "welcome", "session": "s"}
    assert await events.next() == {"type": "message", "data": "x"}
    assert events.received == sum(map(len, pieces))


async def test_ndjson_lines_are_envelopes_and_empty_heartbeat_lines_are_skipped() -> None:
    events = Events("stream", _pieces(b'{"type":"welcome"}\n\n{"type":', b'"message"}\n'))
    assert await events.next() == {"type": "welcome"}
    assert await events.next() == {"type": "message"}
    with pytest.raises(StopAsyncIteration):
        await events.next()
