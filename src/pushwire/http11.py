"""HTTP/1.x wire bytes: status line and headers, fixed-length bodies, chunked streaming. Pure."""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

__all__ = ["CHUNKED_END", "chunk", "response_head", "simple_response"]

CHUNKED_END: Final = b"0\r\n\r\n"

_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}


def response_head(
    status: int,
    headers: list[tuple[str, str]],
    *,
    version: str = "1.1",
    keep_alive: bool = True,
    length: int | None = None,
) -> bytes:
    """Status line and headers.

    `length` is the body's size; `None` means a chunked body, which HTTP/1.1 alone has.
    A 1xx or 204 answer has no body, so no framing header (RFC 9110 8.6, 9112 6.1).

    Raises:
        ValueError: a chunked body for HTTP/1.0, or a body for a 1xx or 204 answer.
    """
    lines = [f"HTTP/{version} {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if status < 200 or status == 204:
        if length:
            raise ValueError(f"a {status} answer has no body (length {length})")
    elif length is None:
        if version != "1.1":
            raise ValueError(f"HTTP/{version} has no chunked bodies: give the length")
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    if not keep_alive:
        lines.append("Connection: close")
    elif version == "1.0":
        # HTTP/1.0 keep-alive is opt-in: say that we honour it.
        lines.append("Connection: keep-alive")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def simple_response(
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: list[tuple[str, str]] | None = None,
    version: str = "1.1",
    keep_alive: bool = True,
    head_only: bool = False,
) -> bytes:
    """A whole response with a Content-Length body."""
    payload = body.encode() if isinstance(body, str) else body
    all_headers = [("Content-Type", content_type), *(headers or [])]
    head = response_head(
        status, all_headers, version=version, keep_alive=keep_alive, length=len(payload)
    )
    return head if head_only else head + payload


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 7.1). Empty data would end the body: refused."""
    if not data:
        raise ValueError("an empty chunk ends a chunked body; use CHUNKED_END")
    return b"%x\r\n%b\r\n" % (len(data), data)
