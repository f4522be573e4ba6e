"""The client's `text/event-stream` parser, from literal bytes and from streams hypothesis
writes with every line ending, cut anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushwire.client.errors import ConnectionLost
from pushwire.client.transports.sse_parser import SseEvent, SseParser


def parse(*chunks: bytes, max_event: int = 1000) -> tuple[list[SseEvent], SseParser]:
    parser = SseParser(max_event)
    events: list[SseEvent] = []
    for chunk in chunks:
        parser.receive_data(chunk)
        events.extend(parser.events_received())
    return events, parser


def test_data_lines_of_one_event_are_joined_with_a_line_feed() -> None:
    events, _ = parse(b"data: one\ndata:two\ndata:  three\n\n")
    assert events == [SseEvent("message", "one\ntwo\n three")]


def test_cr_lf_and_crlf_all_end_lines_even_split_across_chunks() -> None:
    events, _ = parse(b"data: a\r\ndata: b\rdata: c\n\r", b"\ndata: d\r", b"\n\r", b"\n")
    assert events == [SseEvent("message", "a\nb\nc"), SseEvent("message", "d")]


def test_id_event_and_retry_fields() -> None:
    events, parser = parse(
        b"retry: 2500\nid: e1:4\nevent: gap\ndata: {}\n\ndata: next\n\nid\ndata: x\n\n"
    )
    assert events == [
        SseEvent("gap", "{}", "e1:4"),
        SseEvent("message", "next", "e1:4"),  # the id stays for the events after it
        SseEvent("message", "x", ""),  # an empty id resets it
    ]
    assert parser.retry == 2500 and parser.last_event_id == ""


def test_what_the_standard_ignores_is_ignored() -> None:
    events, parser = parse(
        b"\xef\xbb\xbf: a comment, a heartbeat\n\n"  # a byte order mark, then a comment
        b"retry: 1.5\nretry: soon\nid: a\0b\nfoo: bar\nevent: lone\n\n"  # nothing to dispatch
        b"data\n\n"  # a field with no colon: data with an empty value
    )
    assert events == [SseEvent("message", "")]
    assert parser.retry is None and parser.last_event_id == ""


def test_an_event_is_dispatched_only_by_its_blank_line() -> None:
    events, _ = parse(b"data: almost\n")
    assert events == []


def test_a_line_or_an_event_over_the_bound_ends_the_stream() -> None:
    assert parse(b"data: " + b"x" * 14 + b"\n\n", max_event=20)[0] == [
        SseEvent("message", "x" * 14)
    ]
    with pytest.raises(ConnectionLost) as line:
        parse(b"data: " + b"x" * 15, max_event=20)
    assert (line.value.code, line.value.reason) == (1009, "sse: a line over 20 characters")
    with pytest.raises(ConnectionLost) as event:
        parse(b"data: 123456789\ndata: 123456789\ndata: 1\n", max_event=20)
    assert (event.value.code, event.value.reason) == (1009, "sse: an event over 20 characters")


def test_utf8_split_across_chunks_and_invalid_bytes() -> None:
    encoded = "data: déjà vu\n\n".encode()
    events, _ = parse(encoded[:8], encoded[8:])
    assert events == [SseEvent("message", "déjà vu")]
    assert parse(b"data: \xff\n\n")[0] == [SseEvent("message", "\ufffd")]


# A field's text: no line ends, and nothing a parser would read differently at its start.
TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0\ufeff"), max_size=20
)
EVENT = st.tuples(
    st.one_of(st.none(), TEXT.filter(lambda t: t != "" and not t.startswith(" "))),
    st.lists(TEXT, min_size=1, max_size=4),
    st.one_of(st.none(), TEXT),
)


@given(
    st.lists(EVENT, max_size=6),
    st.sampled_from(["\n", "\r", "\r\n"]),
    st.lists(st.integers(min_value=1, max_value=12), max_size=40),
    st.booleans(),
)
def test_any_stream_with_any_line_ending_cut_anywhere_reads_back(
    written: list[tuple[str | None, list[str], str | None]],
    end: str,
    cuts: list[int],
    comments: bool,
) -> None:
    text, expected, last_id = "", [], ""
    for kind, lines, event_id in written:
        if comments:
            text += f": heartbeat{end}"
        if event_id is not None:
            text += f"id: {event_id}{end}"
            last_id = event_id
        if kind is not None:
            text += f"event: {kind}{end}"
        text += "".join(f"data: {line}{end}" for line in lines)
        text += end
        expected.append(SseEvent(kind or "message", "\n".join(lines), last_id))
    data = text.encode()
    chunks, at = [], 0
    for size in cuts:
        chunks.append(data[at : at + size])
        at += size
    chunks.append(data[at:])
    assert parse(*chunks, max_event=10_000)[0] == expected
