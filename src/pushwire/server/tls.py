"""TLS on a connection the door has already counted: the handshake is bounded by a timeout
and, once done, hands the TLS transport to the connection's own protocol.

The TLS protocol is installed at once, in `connection_made`, not by `loop.start_tls` in a
task: uvloop starts reading when `connection_made` returns, and the ClientHello must not reach
the connection's protocol.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import functools
import logging
import ssl
from collections.abc import Callable
from typing import cast

__all__ = ["secure"]

log = logging.getLogger("pushwire.server")


def secure(
    socket: asyncio.Transport,
    protocol: asyncio.Protocol,
    then: Callable[[asyncio.Transport], object],
    context: ssl.SSLContext,
    timeout: float,
) -> None:
    """Run the server side of a TLS handshake on `socket` within `timeout`: `then(tls)` once
    done, and `protocol` gets the connection's events from then on; a handshake that fails
    or stalls drops the connection (`protocol.connection_lost`)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    secured = _Secured(protocol, then)
    tls = _tls_protocol(loop)(
        loop,
        secured,
        context,
        waiter,
        server_side=True,
        call_connection_made=True,
        ssl_handshake_timeout=timeout,
    )
    waiter.add_done_callback(functools.partial(_handshake_done, secured))
    socket.set_protocol(tls)
    tls.connection_made(socket)


def _tls_protocol(loop: asyncio.AbstractEventLoop) -> Callable[..., asyncio.BufferedProtocol]:
    """The TLS protocol class of the running loop's kind (uvloop has its own, not in its
    stubs); both take asyncio's `SSLProtocol` arguments."""
    if type(loop).__module__.startswith("uvloop"):
        import uvloop.loop

        return cast(Callable[..., asyncio.BufferedProtocol], uvloop.loop.SSLProtocol)  # type: ignore[attr-defined]
    return asyncio.sslproto.SSLProtocol


def _handshake_done(secured: _Secured, waiter: asyncio.Future[None]) -> None:
    """The handshake ended: if it did not hand the connection over (it failed, timed out,
    or the socket was dropped meanwhile), the connection is gone."""
    if secured.done:
        return
    exc = None if waiter.cancelled() else waiter.exception()
    log.debug("TLS handshake failed: %r", exc)
    secured.protocol.connection_lost(exc if isinstance(exc, Exception) else None)


class _Secured(asyncio.Protocol):
    """A TLS connection's first protocol: once the handshake is done, hands the TLS
    transport over to the connection's own protocol."""

    __slots__ = ("done", "protocol", "then")

    def __init__(
        self, protocol: asyncio.Protocol, then: Callable[[asyncio.Transport], object]
    ) -> None:
        self.protocol = protocol
        self.then = then
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.done = True
        tls = cast(asyncio.Transport, transport)
        tls.set_protocol(self.protocol)
        self.then(tls)
