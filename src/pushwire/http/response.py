"""HTTP/1.x response bytes: status line and headers, fixed-length bodies, chunked streaming."""

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
    """Status line and headers. `length=None` means a chunked body (HTTP/1.1 only)."""
    lines = [f"HTTP/{version} {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if length is None:
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
