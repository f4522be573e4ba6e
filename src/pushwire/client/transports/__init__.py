"""The Python client's transports: one small interface (base.py), one module per wire.

A transport opens a connection with the `hello` envelope, sends envelopes, and yields the
envelopes that arrive, as `(envelope, binary data or None)`. When its connection ends it raises
`ConnectionLost`; the client decides whether to come back. `make_transport()` picks the class
for a name and a URL.
"""

from __future__ import annotations

import ssl
from typing import Final
from urllib.parse import urlsplit

from .base import ClientTransport, Envelope, Item
from .poll import PollTransport
from .streaming import SseTransport, StreamTransport
from .tcp import TcpTransport
from .websocket import WebSocketTransport

__all__ = ["TRANSPORTS", "ClientTransport", "Envelope", "Item", "make_transport"]

TRANSPORTS: Final = ("websocket", "sse", "stream", "longpoll", "polling", "tcp")


def make_transport(
    name: str,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    poll_interval: float,
    send_timeout: float,
    poll_margin: float,
) -> ClientTransport:
    """A transport for `url` (ws://, wss://, http://, https:// or tcp://); the HTTP ones
    abandon an upload after `send_timeout` and a poll `poll_margin` after its hold.

    Raises:
        ValueError: an unknown transport, or one that the URL's scheme cannot carry.
    """
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https", "tcps")
    host = parts.hostname or "127.0.0.1"
    path = parts.path.rstrip("/") or "/pushwire"
    if name == "tcp":
        if parts.scheme not in ("tcp", "tcps"):
            raise ValueError(f"the tcp transport needs a tcp:// URL, not {url!r}")
        return TcpTransport(host, parts.port or 7000, ssl_context)
    if parts.scheme in ("tcp", "tcps"):
        raise ValueError(f"a tcp:// URL carries only the tcp transport, not {name!r}")
    port = parts.port or (443 if secure else 80)
    if name == "websocket":
        scheme = "wss" if secure else "ws"
        return WebSocketTransport(f"{scheme}://{parts.netloc}{path}", ssl_context)
    if name == "sse":
        return SseTransport(path, host, port, ssl_context, send_timeout)
    if name == "stream":
        return StreamTransport(path, host, port, ssl_context, send_timeout)
    if name in ("longpoll", "polling"):
        return PollTransport(
            name, path, host, port, ssl_context, poll_interval, send_timeout, poll_margin
        )
    raise ValueError(f"unknown transport {name!r}; known: {', '.join(TRANSPORTS)}")
