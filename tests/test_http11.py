"""Response bytes: status lines, framing headers, persistence, chunks."""

from __future__ import annotations

import pytest

from pushwire.http11 import CHUNKED_END, chunk, response_head, simple_response


def test_an_http_11_response_head_with_a_length() -> None:
    head = response_head(200, [("Content-Type", "application/json")], length=12)
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
    )


def test_an_http_11_response_without_a_length_is_chunked() -> None:
    head = response_head(200, [("Content-Type", "text/event-stream")])
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


def test_a_response_that_closes_says_connection_close() -> None:
    head = response_head(404, [], keep_alive=False, length=0)
    assert head == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def test_an_http_10_keep_alive_answer_says_keep_alive_and_has_a_content_length() -> None:
    response = simple_response(200, "ok\n", version="1.0", keep_alive=True)
    assert response == (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
    )
    assert b"chunked" not in response.lower()


def test_an_http_10_answer_that_closes_says_connection_close() -> None:
    head = response_head(200, [], version="1.0", keep_alive=False, length=0)
    assert head == b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("keep_alive", [True, False])
def test_http_10_has_no_chunked_bodies(keep_alive: bool) -> None:
    with pytest.raises(ValueError) as error:
        response_head(200, [], version="1.0", keep_alive=keep_alive, length=None)
    assert str(error.value) == "HTTP/1.0 has no chunked bodies: give the length"


def test_a_204_answer_has_no_framing_header() -> None:
    # RFC 9110 8.6 / RFC 9112 6.1: neither Content-Length nor Transfer-Encoding on a 204.
    head = response_head(204, [("Access-Control-Max-Age", "600")], length=0)
    assert head == b"HTTP/1.1 204 No Content\r\nAccess-Control-Max-Age: 600\r\n\r\n"
    assert response_head(204, []) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_a_204_answer_with_a_body_is_refused() -> None:
    with pytest.raises(ValueError) as error:
        response_head(204, [], length=3)
    assert str(error.value) == "a 204 answer has no body (length 3)"


def test_a_simple_response_carries_its_body_and_type() -> None:
    response = simple_response(
        400, "invalid channel name 'a b'\n", headers=[("Vary", "Origin")], keep_alive=False
    )
    assert response == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Vary: Origin\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
        b"invalid channel name 'a b'\n"
    )


def test_a_simple_response_counts_bytes_not_characters() -> None:
    response = simple_response(200, "é", content_type="text/plain; charset=utf-8")
    assert response.endswith(b"Content-Length: 2\r\n\r\n\xc3\xa9")


def test_a_head_only_response_keeps_the_length_of_the_body_it_leaves_out() -> None:
    response = simple_response(200, b"ok\n", head_only=True)
    assert response == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n"
    )


def test_an_unknown_status_has_a_placeholder_reason() -> None:
    assert response_head(599, [], length=0).startswith(b"HTTP/1.1 599 Unknown\r\n")


def test_a_chunk_is_hex_length_data_crlf() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert CHUNKED_END == b"0\r\n\r\n"


def test_an_empty_chunk_is_refused_because_it_would_end_the_body() -> None:
    with pytest.raises(ValueError) as error:
        chunk(b"")
    assert str(error.value) == "an empty chunk ends a chunked body; use CHUNKED_END"
