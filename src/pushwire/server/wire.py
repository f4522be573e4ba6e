"""What the socket calls: the protocol object a door gives the event loop for each HTTP
connection, handing every event to the connection's protocol of the moment (`Wire.to`): its
`HttpConnection`, then the WebSocket that took the connection over.

Switching the loop's protocol (`set_protocol`) costs uvloop a stop and a start of reading,
two epoll changes and a system call more for every WebSocket upgrade (about 5% of a
subscriber's handshake, issue 18); pointing a `Wire` elsewhere costs nothing. The price is
one Python call more for each event and this one-slot object per connection.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wire"]


class Wire(asyncio.Protocol):
    """Hands the socket's events to `to` (see the module docstring)."""

    __slots__ = ("to",)

    def __init__(self, to: asyncio.Protocol) -> None:
        self.to = to

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.to.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.to.data_received(data)

    def eof_received(self) -> bool | None:
        return self.to.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.to.connection_lost(exc)

    def pause_writing(self) -> None:
        self.to.pause_writing()

    def resume_writing(self) -> None:
        self.to.resume_writing()
