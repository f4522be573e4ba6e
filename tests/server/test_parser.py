"""RequestParser driven with literal bytes: framing, connection persistence, bounds, errors."""

from __future__ import annotations

import time

import pytest

from pushwire.errors import BadRequest, BodyTooLarge, HeadersTooLarge, VersionNotSupported
from pushwire.server.parser import RequestParser
from pushwire.web import Request


def parser(max_header_bytes: int = 16384, max_body_bytes: int = 1024) -> RequestParser:
    return RequestParser(max_header_bytes=max_header_bytes, max_body_bytes=max_body_bytes)


def feed(p: RequestParser, *chunks: bytes) -> list[Request]:
    """Feed each chunk as one `receive_data` call; every request completed."""
    requests: list[Request] = []
    for chunk in chunks:
        p.receive_data(chunk)
        requests += p.events_received()
    return requests


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def head_of(size: int, *, target: bytes = b"/") -> bytes:
    """A complete GET head of exactly `size` bytes on the wire, padded in an X-Pad header."""
    start = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def unfinished_head_of(size: int) -> bytes:
    """The first `size` bytes of a head that never ends."""
    start = b"GET / HTTP/1.1\r\nX-Endless: "
    return start + b"a" * (size - len(start))


def post(body: bytes, *, path: bytes = b"/api/publish/room") -> bytes:
    return b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (path, len(body), body)


def chunked_post(*chunks: bytes, trailers: bytes = b"") -> bytes:
    framed = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return (
        b"POST /api/publish/room HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + framed
        + b"0\r\n"
        + trailers
        + b"\r\n"
    )


# -- requests and their fields --------------------------------------------------------------------


def test_a_simple_get_becomes_one_request() -> None:
    p = parser()
    [request] = feed(p, b"GET /ws/room?hello=%7B%7D&x=a+b HTTP/1.1\r\nHost: example\r\n\r\n")
    assert request.method == "GET"
    assert request.path == "/ws/room"
    assert request.query == "hello=%7B%7D&x=a+b"
    assert request.raw_target == "/ws/room?hello=%7B%7D&x=a+b"
    assert request.version == "1.1"
    assert request.headers == [("host", "example")]
    assert request.keep_alive
    assert request.body == b""
    assert not request.upgrade
    assert request.query_param("hello") == "{}"
    assert request.query_param("x") == "a b"
    assert request.query_param("missing") is None
    assert not p.in_request


def test_header_names_are_lower_case_and_repetitions_kept_in_wire_order() -> None:
    [request] = feed(parser(), b"GET / HTTP/1.1\r\nX-Tag: one\r\nHost: x\r\nx-tag: two\r\n\r\n")
    assert request.headers == [("x-tag", "one"), ("host", "x"), ("x-tag", "two")]
    assert request.header("x-tag") == "one"
    assert request.header_values("x-tag") == ["one", "two"]
    assert request.header("origin") is None
    assert request.header("origin", "none") == "none"


def test_header_values_lose_the_whitespace_around_them() -> None:
    [request] = feed(parser(), b"GET / HTTP/1.1\r\nUpgrade:  websocket \t \r\nHost:x\r\n\r\n")
    assert request.headers == [("upgrade", "websocket"), ("host", "x")]


def test_a_percent_encoded_path_is_decoded_and_the_fragment_dropped() -> None:
    [request] = feed(parser(), b"GET /ws/a%40b#frag HTTP/1.1\r\n\r\n")
    assert request.path == "/ws/a@b"


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = (
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
        + post(b"two")
        + b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    requests = feed(parser(), data)
    assert [(r.method, r.path, r.body) for r in requests] == [
        ("GET", "/one", b""),
        ("POST", "/api/publish/room", b"two"),
        ("GET", "/three", b""),
    ]


def test_a_request_split_byte_by_byte_is_parsed_like_a_whole_one() -> None:
    data = post(b"hello\r\n\r\nworld") + b"GET /next HTTP/1.1\r\n\r\n"
    whole = feed(parser(), data)
    p = parser()
    in_pieces: list[Request] = []
    for byte in bytewise(data):
        assert len(in_pieces) < 2
        in_pieces += feed(p, byte)
    assert in_pieces == whole
    assert [(r.path, r.body) for r in whole] == [
        ("/api/publish/room", b"hello\r\n\r\nworld"),
        ("/next", b""),
    ]


def test_the_parser_is_in_the_head_until_the_blank_line_then_in_the_body() -> None:
    p = parser()
    assert (p.in_request, p.in_head) == (False, False)
    feed(p, b"POST / HTTP/1.1\r\nContent-")
    assert (p.in_request, p.in_head) == (True, True)
    feed(p, b"Length: 3\r\n\r\nab")
    assert (p.in_request, p.in_head) == (True, False)
    [request] = feed(p, b"c")
    assert request.body == b"abc"
    assert (p.in_request, p.in_head) == (False, False)


# -- connection persistence -----------------------------------------------------------------------


def test_http_10_without_keep_alive_ends_the_stream_and_later_bytes_are_ignored() -> None:
    p = parser()
    [request] = feed(p, b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    assert request.version == "1.0"
    assert not request.keep_alive
    assert p.finished
    assert feed(p, b"GET /c HTTP/1.0\r\n\r\n", b"not even HTTP\r\n\r\n") == []


def test_http_10_with_connection_keep_alive_keeps_the_stream() -> None:
    p = parser()
    requests = feed(
        p,
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    )
    assert [(r.path, r.keep_alive) for r in requests] == [("/a", True), ("/b", True)]
    assert not p.finished


def test_http_11_keeps_the_stream_by_default() -> None:
    p = parser()
    requests = feed(p, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    assert [r.keep_alive for r in requests] == [True, True]
    assert not p.finished


def test_http_11_connection_close_ends_the_stream() -> None:
    p = parser()
    [request] = feed(p, b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    assert not request.keep_alive
    assert p.finished
    assert feed(p, b"GET /c HTTP/1.1\r\n\r\n") == []


# -- bodies ---------------------------------------------------------------------------------------


def test_a_content_length_body_is_collected_across_feeds() -> None:
    p = parser()
    assert feed(p, post(b"hello world")[:-4]) == []
    [request] = feed(p, b"orld")
    assert request.body == b"hello world"


def test_a_chunked_body_is_decoded_and_trailers_are_not_headers() -> None:
    data = chunked_post(
        b"hello ", b"\r\n\r\n", b"world", trailers=b"Origin: http://evil.example\r\n"
    )
    for pieces in ([data], bytewise(data)):
        [request] = feed(parser(), *pieces)
        assert request.body == b"hello \r\n\r\nworld"
        assert request.header("origin") is None
        assert request.headers == [("host", "x"), ("transfer-encoding", "chunked")]


def test_a_chunked_request_followed_by_another_in_one_feed() -> None:
    requests = feed(parser(), chunked_post(b"one") + b"GET /after HTTP/1.1\r\n\r\n")
    assert [(r.path, r.body) for r in requests] == [
        ("/api/publish/room", b"one"),
        ("/after", b""),
    ]


# -- head bound -----------------------------------------------------------------------------------


def test_a_head_exactly_at_max_header_bytes_passes() -> None:
    [request] = feed(parser(max_header_bytes=1000), head_of(1000))
    assert request.path == "/"


def test_a_head_one_byte_over_max_header_bytes_is_refused() -> None:
    with pytest.raises(HeadersTooLarge) as error:
        feed(parser(max_header_bytes=1000), head_of(1001))
    assert str(error.value) == "request head over size limit (1001 > 1000 bytes)"
    assert error.value.http_status == 431


def test_a_head_at_the_bound_passes_when_it_trickles_in_byte_by_byte() -> None:
    [request] = feed(parser(max_header_bytes=1000), *bytewise(head_of(1000)))
    assert request.path == "/"


def test_a_head_one_byte_over_is_refused_when_it_trickles_in_byte_by_byte() -> None:
    with pytest.raises(HeadersTooLarge) as error:
        feed(parser(max_header_bytes=1000), *bytewise(head_of(1001)))
    assert str(error.value) == "request head over size limit (1001 > 1000 bytes)"


def test_the_head_bound_counts_wire_bytes_not_the_parsed_fields() -> None:
    # No space after the colon: 26 bytes on the wire, exactly the bound.
    compact = b"GET / HTTP/1.1\r\nHost:x\r\n\r\n"
    assert len(compact) == 26
    assert len(feed(parser(max_header_bytes=26), compact)) == 1
    # Whitespace around a value is dropped by the parser but still crossed the wire.
    padded = b"GET / HTTP/1.1\r\nX-Pad:" + b" " * 40 + b"a" + b" " * 40 + b"\r\n\r\n"
    with pytest.raises(HeadersTooLarge) as error:
        feed(parser(max_header_bytes=len(padded) - 1), padded)
    assert str(error.value) == f"request head over size limit (107 > {len(padded) - 1} bytes)"


def test_an_unfinished_head_at_the_bound_is_still_awaited() -> None:
    p = parser(max_header_bytes=1000)
    assert feed(p, *bytewise(unfinished_head_of(1000))) == []
    assert p.in_head


def test_an_unfinished_head_one_byte_over_the_bound_is_refused_in_one_feed() -> None:
    with pytest.raises(HeadersTooLarge) as error:
        feed(parser(max_header_bytes=1000), unfinished_head_of(1001))
    assert str(error.value) == "request head over size limit (> 1000 bytes)"


def test_an_unfinished_head_one_byte_over_the_bound_is_refused_when_it_trickles_in() -> None:
    p = parser(max_header_bytes=1000)
    data = unfinished_head_of(1001)
    feed(p, *bytewise(data[:1000]))
    with pytest.raises(HeadersTooLarge) as error:
        feed(p, data[1000:])
    assert str(error.value) == "request head over size limit (> 1000 bytes)"


def test_an_unfinished_head_after_a_pipelined_request_is_counted_from_its_first_byte() -> None:
    first = b"GET /first HTTP/1.1\r\n\r\n"
    at_bound = parser(max_header_bytes=1000)
    assert len(feed(at_bound, first + unfinished_head_of(1000))) == 1
    assert at_bound.in_head
    over = parser(max_header_bytes=1000)
    data = unfinished_head_of(1001)
    feed(over, first + data[:600])
    with pytest.raises(HeadersTooLarge) as error:
        feed(over, data[600:])
    assert str(error.value) == "request head over size limit (> 1000 bytes)"


def test_the_head_bound_applies_to_each_pipelined_request_anew() -> None:
    requests = feed(parser(max_header_bytes=1000), head_of(1000) * 3)
    assert len(requests) == 3


# -- body bound -----------------------------------------------------------------------------------


def test_a_declared_body_exactly_at_max_body_bytes_passes() -> None:
    [request] = feed(parser(max_body_bytes=1000), post(b"x" * 1000))
    assert len(request.body) == 1000


def test_a_declared_body_one_byte_over_max_body_bytes_is_refused_at_the_head() -> None:
    with pytest.raises(BodyTooLarge) as error:
        # Refused before any of the body arrives.
        feed(parser(max_body_bytes=1000), post(b"x" * 1001).split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    assert str(error.value) == "body over size limit (1001 > 1000 bytes)"
    assert error.value.http_status == 413


def test_a_chunked_body_exactly_at_max_body_bytes_passes() -> None:
    [request] = feed(parser(max_body_bytes=1000), chunked_post(b"x" * 600, b"y" * 400))
    assert request.body == b"x" * 600 + b"y" * 400


def test_a_chunked_body_one_byte_over_max_body_bytes_is_refused() -> None:
    with pytest.raises(BodyTooLarge) as error:
        feed(parser(max_body_bytes=1000), chunked_post(b"x" * 600, b"y" * 401))
    assert str(error.value) == "body over size limit (> 1000 bytes)"


def test_chunked_framing_and_trailers_are_bounded_on_the_wire() -> None:
    # Trailers are buffered by the parser like headers: they may not grow without bound.
    endless_trailer = chunked_post(b"x")[: -len(b"\r\n")] + b"X-Trailer: " + b"a" * 2000
    with pytest.raises(BodyTooLarge) as error:
        feed(parser(max_header_bytes=500, max_body_bytes=1000), endless_trailer)
    assert str(error.value) == (
        "chunked body over size limit (2020 > 1500 bytes on the wire, "
        "framing and trailers included)"
    )


# -- malformed requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GARBAGE\r\n\r\n", "malformed request: Invalid method encountered"),
        (b"GET / HTTP/9.9\r\n\r\n", "malformed request: Invalid HTTP version"),
        (b"GET / HTTP/1.1\nHost: x\n\n", "malformed request: Expected CRLF after version"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            "malformed request: Invalid character in Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "malformed request: Duplicate Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "malformed request: Invalid character in chunk size",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "malformed request: Content-Length can't be present with Transfer-Encoding",
        ),
        (b"\x16\x03\x01\x00\xa5", "malformed request: Invalid method encountered"),
    ],
)
def test_malformed_input_is_a_bad_request_that_says_what_is_wrong(
    data: bytes, message: str
) -> None:
    with pytest.raises(BadRequest) as error:
        feed(parser(), data)
    assert str(error.value) == message
    assert error.value.http_status == 400


# -- upgrade --------------------------------------------------------------------------------------

UPGRADE = (
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_an_upgrade_request_hands_over_the_bytes_that_follow() -> None:
    p = parser()
    [request] = feed(p, UPGRADE + b"\x81\x85frame")
    assert request.upgrade
    assert request.path == "/echo"
    assert request.upgrade_data == b"\x81\x85frame"
    assert p.upgraded


def test_an_upgrade_request_split_byte_by_byte_has_no_upgrade_data() -> None:
    p = parser()
    [request] = feed(p, *bytewise(UPGRADE))
    assert request.upgrade
    assert request.upgrade_data == b""


def test_bytes_fed_after_an_upgrade_join_its_upgrade_data() -> None:
    p = parser()
    [request] = feed(p, UPGRADE + b"ab")
    assert feed(p, b"cd", b"GET / HTTP/1.1\r\n\r\n") == []
    assert request.upgrade_data == b"abcdGET / HTTP/1.1\r\n\r\n"


def test_a_request_before_an_upgrade_in_the_same_feed_comes_first() -> None:
    requests = feed(parser(), b"GET /healthz HTTP/1.1\r\n\r\n" + UPGRADE + b"x")
    assert [(r.path, r.upgrade, r.upgrade_data) for r in requests] == [
        ("/healthz", False, b""),
        ("/echo", True, b"x"),
    ]


# -- what HTTP/1.1 does not allow (RFC 9112) ---------------------------------------------------


@pytest.mark.parametrize("line", [b"GET /\r\n\r\n", b"GET / HTTP/0.9\r\n\r\n"])
def test_a_request_line_without_a_version_is_refused_as_http_09(line: bytes) -> None:
    with pytest.raises(BadRequest, match=r"without an HTTP version \(HTTP/0.9\)"):
        parser().receive_data(line)


def test_http_2_in_an_http_1_request_line_gets_505() -> None:
    # llhttp refuses other versions itself (400, "Invalid HTTP version"), but takes 2.0.
    with pytest.raises(VersionNotSupported) as error:
        parser().receive_data(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert error.value.http_status == 505


def test_one_host_header_is_taken_and_a_second_is_refused() -> None:
    [request] = feed(parser(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert request.header("host") == "a"
    with pytest.raises(BadRequest, match="more than one Host header"):
        parser().receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n")


@pytest.mark.parametrize(
    ("length", "taken"),
    [(b"0" * 18 + b"5", True), (b"0" * 19 + b"5", False), (b"9223372036854775808", False)],
)
def test_a_content_length_is_read_with_at_most_19_digits(length: bytes, taken: bool) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %b\r\n\r\nhello" % length
    if taken:
        [request] = feed(parser(), head)
        assert request.body == b"hello"
    else:
        with pytest.raises(BadRequest, match="Content-Length"):
            parser().receive_data(head)


def test_a_query_of_thousands_of_names_is_split_in_one_pass() -> None:
    # 5,000 names fill a 16 KiB head; asking query_param for each name (as before) took
    # seconds of one core per request. One pass takes milliseconds.
    target = b"/x?" + b"&".join(b"k%d=v" % i for i in range(5000))
    [request] = feed(parser(max_header_bytes=65536), b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    started = time.perf_counter()
    params = request.query_params()
    assert time.perf_counter() - started < 0.5
    assert len(params) == 5000 and params["k4999"] == "v"


def test_a_resting_parser_takes_the_next_request_as_if_it_had_not_rested() -> None:
    # (A held long-poll's connection rests its parser: llhttp is let go until bytes come.)
    p = parser()
    post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    [first] = feed(p, post)
    p.rest()
    [second] = feed(p, b"GET /b?c=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (first.method, first.path, first.body) == ("POST", "/a", b"hello")
    assert (second.method, second.path, second.query, second.keep_alive) == (
        "GET",
        "/b",
        "c=1",
        True,
    )


def test_rest_in_the_middle_of_a_request_changes_nothing() -> None:
    p = parser()
    assert feed(p, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-") == []
    p.rest()
    [request] = feed(p, b"Length: 2\r\n\r\nhi")
    assert (request.path, request.body) == ("/a", b"hi")


def test_a_released_parser_parses_nothing_more() -> None:
    p = parser()
    assert len(feed(p, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == 1
    p.release()
    assert feed(p, b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n") == []
