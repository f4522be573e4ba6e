"""Every sans-I/O parser that reads what a client sends, fuzzed with hypothesis: random bytes
and mutations of valid input, fed whole and in random pieces. Whatever comes in, the only
exceptions that escape are the documented ones (`RemoteError` and its subclasses, which the
doors answer with a status, a close code or an `error` envelope); the parsers' bounds hold.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
from urllib.parse import quote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pushwire.envelope import decode
from pushwire.errors import MAX_MESSAGE, BadRequest, RemoteError
from pushwire.parsing import MAX_POSITION, decimal, quoted
from pushwire.server.parser import RequestParser
from pushwire.transports.sse import parse_last_event_id
from pushwire.transports.tcp import TcpFrame, TcpParser
from pushwire.transports.websocket.protocol import (
    WebSocketClosed,
    WebSocketConnection,
    WebSocketMessage,
)
from pushwire.web import Request
from tests.wire_clients import client_frame

#: Examples per test: 300 in CI; PUSHWIRE_FUZZ_EXAMPLES=20000 for a longer run (docs/security.md).
EXAMPLES = int(os.environ.get("PUSHWIRE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_HEADER, MAX_BODY = 1024, 4096


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts` (positions, any order, any value)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- HTTP request heads and bodies -----------------------------------------------------------------


def parse_http(data: bytes, cuts: list[int]) -> tuple[str, list[tuple[str, str, str, bytes]]]:
    """What the parser makes of `data` fed in pieces: the requests, and how it ended."""
    parser = RequestParser(MAX_HEADER, MAX_BODY)
    requests: list[tuple[str, str, str, bytes]] = []
    try:
        for piece in pieces(data, cuts):
            parser.receive_data(piece)
            requests += [(r.method, r.path, r.version, r.body) for r in parser.events_received()]
    except RemoteError as exc:
        assert len(str(exc)) <= MAX_MESSAGE
        return type(exc).__name__, requests
    for method, _, version, body in requests:
        assert method.isupper() and version in ("1.0", "1.1")
        assert len(body) <= MAX_BODY
    return "ok", requests


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
@example(b"GET /\r\n\r\n", [])
@example(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [3])
@example(b"POST / HTTP/1.1\r\nContent-Length: \xc2\xb2\r\n\r\n", [])
def test_random_bytes_make_requests_or_a_remote_error(data: bytes, cuts: list[int]) -> None:
    parse_http(data, cuts)


TOKENS = st.sampled_from(
    [b"GET", b"POST", b"HEAD", b"/", b"/api/publish/x", b"?a=1&b=%zz", b" ", b"HTTP/1.1",
     b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"\r\n", b"\n", b":", b"Host", b"Content-Length",
     b"Transfer-Encoding", b"chunked", b"Connection", b"close", b"keep-alive", b"Upgrade",
     b"websocket", b"0", b"5", b"ff", b"-1", b"99999999999999999999", b"\xb2", b";ext=1",
     b"\x00", b"\t", b"hello"]
)  # fmt: skip


@FUZZ
@given(st.lists(TOKENS, max_size=60), st.lists(st.integers(0, 2000), max_size=6))
def test_requests_made_of_http_words_make_requests_or_a_remote_error(
    words: list[bytes], cuts: list[int]
) -> None:
    parse_http(b"".join(words), cuts)


def valid_request(body: bytes, chunks: list[int], extra: list[tuple[str, str]]) -> bytes:
    headers = "".join(f"{name}: {value}\r\n" for name, value in extra)
    if chunks:
        framed, rest = b"", body
        for size in chunks:
            part, rest = rest[:size], rest[size:]
            if part:
                framed += b"%x\r\n%b\r\n" % (len(part), part)
        if rest:
            framed += b"%x\r\n%b\r\n" % (len(rest), rest)
        head = f"POST /p HTTP/1.1\r\nHost: x\r\n{headers}Transfer-Encoding: chunked\r\n\r\n"
        return head.encode() + framed + b"0\r\n\r\n"
    head = f"POST /p HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


HEADER_NAME = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-"), min_size=3, max_size=12)
HEADER = st.tuples(
    HEADER_NAME.filter(lambda n: n not in ("host", "content-length", "transfer-encoding")),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
)


@FUZZ
@given(
    st.binary(max_size=MAX_BODY),
    st.lists(st.integers(1, 600), max_size=8),
    st.lists(HEADER, max_size=4),
    st.lists(st.integers(0, 6000), max_size=8),
)
def test_a_valid_request_is_parsed_the_same_whatever_the_pieces(
    body: bytes, chunks: list[int], extra: list[tuple[str, str]], cuts: list[int]
) -> None:
    data = valid_request(body, chunks, extra)
    whole = parse_http(data, [])
    split = parse_http(data, cuts)
    assert split == whole
    outcome, requests = whole
    if outcome == "ok":
        assert requests == [("POST", "/p", "1.1", body)]
    else:  # only the framing of a chunked body can take it over the bound
        assert outcome == "BodyTooLarge" and chunks


@FUZZ
@given(
    st.binary(max_size=MAX_BODY),
    st.lists(st.integers(1, 600), min_size=1, max_size=6),
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=4),
)
def test_a_mutated_request_makes_requests_or_a_remote_error(
    body: bytes, chunks: list[int], where: int, junk: bytes
) -> None:
    data = valid_request(body, chunks, [])
    at = where % len(data)
    parse_http(data[:at] + junk + data[at + len(junk) :], [at])  # overwritten
    parse_http(data[:at] + junk + data[at:], [at])  # inserted


@FUZZ
@given(st.text(st.sampled_from("0123456789abcdefABCDEF;=x -\t²"), min_size=1, max_size=40))
def test_any_chunk_size_line_is_a_chunk_or_a_remote_error(size: str) -> None:
    data = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += size.encode() + b"\r\n" + b"a" * 64 + b"\r\n0\r\n\r\n"
    parse_http(data, [])


@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"\A[0-9]{15,25}\Z"))
def test_any_content_length_is_a_length_or_a_remote_error(length: str) -> None:
    data = f"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode(
        errors="ignore"
    )
    parse_http(data + b"x" * 10, [])


# -- numbers and query parameters ------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=30) | st.from_regex(r"\A[0-9]{1,25}\Z") | st.just("1" * 4301))
def test_decimal_takes_ascii_digits_up_to_the_bound_and_refuses_the_rest(text: str) -> None:
    try:
        value = decimal(text, "cursor")
    except BadRequest as exc:
        assert len(str(exc)) <= 200
        assert not (
            len(text) <= 19 and text.isascii() and text.isdigit() and int(text) <= MAX_POSITION
        )
        return
    assert (0 <= value <= MAX_POSITION and str(value) == text.lstrip("0")) or value == 0


@FUZZ
@given(st.integers(0, MAX_POSITION))
def test_decimal_reads_every_number_in_range(value: int) -> None:
    assert decimal(str(value), "cursor") == value


@FUZZ
@given(st.text(max_size=200))
def test_quoted_is_short_whatever_it_quotes(text: str) -> None:
    assert len(quoted(text)) <= 2 * 40 + 30


@FUZZ
@given(
    st.text(max_size=60)
    | st.builds(lambda e, o: f"{e}:{o}", st.text(max_size=10), st.text(max_size=25))
)
def test_a_last_event_id_is_a_position_none_or_bad_request(value: str) -> None:
    try:
        position = parse_last_event_id(value)
    except BadRequest:
        return
    if position is not None:
        epoch, offset = position
        assert epoch and 0 <= offset <= MAX_POSITION


@FUZZ
@given(
    st.text(max_size=300) | st.lists(st.text("a%=&+2G0x", max_size=8), max_size=40).map("&".join)
)
def test_any_query_string_gives_parameters(query: str) -> None:
    request = Request(
        method="GET", path="/", query=query, version="1.1", headers=[], keep_alive=True,
        body=b"", upgrade=False, raw_target="/?" + query,
    )  # fmt: skip
    params = request.query_params()
    for name in params:
        assert request.query_param(name) is not None
    for name, value in (("cursor", "12"), ("lastEventId", "e:3")):
        if name not in params:
            with_it = Request(
                method="GET", path="/", query=f"{name}={quote(value)}&" + query, version="1.1",
                headers=[], keep_alive=True, body=b"", upgrade=False, raw_target="/",
            )  # fmt: skip
            assert with_it.query_params()[name] == value == with_it.query_param(name)


# -- envelopes -------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_frame_is_an_envelope_or_bad_request(frame: str | bytes) -> None:
    try:
        envelope = decode(frame)
    except BadRequest as exc:
        assert len(str(exc)) <= MAX_MESSAGE
        return
    assert isinstance(envelope.type, str)


@FUZZ
@given(st.dictionaries(st.sampled_from(["type", "data", "data64", "id", "channel", "seq"]), JSON))
@example({"type": "", "data": None, "data64": "\x80"})  # a ValueError escaped, before
def test_any_json_object_is_an_envelope_or_bad_request(fields: dict[str, object]) -> None:
    text = json.dumps(fields)
    for frame in (text, text.encode() + b"\n" + b"raw"):
        try:
            envelope = decode(frame)
        except BadRequest:
            continue
        assert envelope.type == fields["type"]


# -- TCP frames ------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
@example(b"<policy-file-request/>\x00", [5])
@example(b"\x00\x00\x00\x00", [])
def test_random_bytes_on_the_tcp_port_are_frames_or_a_remote_error(
    data: bytes, cuts: list[int]
) -> None:
    parser = TcpParser(max_frame=1000)
    try:
        for piece in pieces(data, cuts):
            parser.receive_data(piece)
            parser.events_received()
    except RemoteError as exc:
        assert len(str(exc)) <= MAX_MESSAGE
    assert parser.incomplete <= 4 + 1000


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 255]), st.binary(max_size=300)), max_size=6),
    st.lists(st.integers(0, 3000), max_size=8),
)
def test_tcp_frames_are_read_whatever_the_pieces(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(struct.pack("!I", len(p) + 1) + bytes((k,)) + p for k, p in frames)

    def read(feeds: list[bytes]) -> tuple[list[object], str]:
        parser = TcpParser(max_frame=1000)
        got: list[object] = []
        try:
            for piece in feeds:
                parser.receive_data(piece)
                got += [e.data for e in parser.events_received() if isinstance(e, TcpFrame)]
        except RemoteError as exc:
            # Frames that ended before the bad one are kept, whatever the pieces.
            got += [e.data for e in parser.events_received() if isinstance(e, TcpFrame)]
            return got, type(exc).__name__
        return got, "ok"

    assert read(pieces(wire, cuts)) == read([wire])


# -- WebSocket frames ------------------------------------------------------------------------------


def run_websocket(feeds: list[bytes]) -> list[object]:
    connection = WebSocketConnection(max_message=2000)
    events: list[object] = []
    for piece in feeds:
        connection.receive_data(piece)
        events += connection.events_received()
        connection.data_to_send()
    connection.receive_eof()
    events += connection.events_received()
    connection.data_to_send()
    return events


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
@example(b"\x88\x82abcd\x03\xe8", [])  # a Close with a close code and no reason
@example(b"\x88\x81abcd\x03", [])  # a Close with one byte
def test_random_bytes_on_a_websocket_are_events_never_an_exception(
    data: bytes, cuts: list[int]
) -> None:
    events = run_websocket(pieces(data, cuts))
    assert sum(isinstance(e, WebSocketClosed) for e in events) <= 1


FRAME = st.tuples(
    st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB]),
    st.booleans(),
    st.integers(0, 7),
    st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
)


@FUZZ
@given(st.lists(FRAME, max_size=8), st.lists(st.integers(0, 3000), max_size=8))
def test_websocket_frames_of_any_kind_make_the_same_events_whatever_the_pieces(
    frames: list[tuple[int, bool, int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(client_frame(op, payload, fin=fin, rsv=rsv) for op, fin, rsv, payload in frames)
    whole = run_websocket([wire])
    assert run_websocket(pieces(wire, cuts)) == whole
    for event in whole:
        if isinstance(event, WebSocketMessage):
            assert len(event.data) <= 2000
        if isinstance(event, WebSocketClosed):
            assert 1000 <= event.code <= 4999
