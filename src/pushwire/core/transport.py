"""The transport contract, as small as the hub needs: write framed bytes, close with a reason.

A transport also names its `Framing`: the pure function set that turns hub events into the
bytes of its wire. The hub frames a channel message once per framing and hands the same
bytes object to every session using that framing.

What a client sends goes the other way: the transport hands each application frame to its
`Receiver` (pushwire's handler of that client: raw mode or pushwire.v1).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from ..message import Data, Message

__all__ = ["Framing", "Receiver", "Transport", "write_failed"]

log = logging.getLogger("pushwire.hub")


class Framing(Protocol):
    """How one kind of connection puts hub events on its wire. Pure, hashable, shared."""

    def frame_message(self, message: Message) -> bytes:
        """A channel message."""

    def frame_direct(self, data: Data, epoch: str | None = None, offset: int = 0) -> bytes:
        """A direct message: from its user's inbox, at `epoch:offset`; without an `epoch`,
        a message to one session only (an echo)."""

    def frame_control(self, fields: dict[str, Any]) -> bytes:
        """A control envelope (welcome, replies, errors) without application data; b"" when
        the wire has no place for it (raw mode)."""


class Receiver(Protocol):
    """Takes what one client connection brings: its opening, its messages, its end."""

    def open(self) -> Awaitable[None] | None:
        """The connection is open; an awaitable when opening must wait (connect handler)."""

    def receive(self, data: Data) -> None:
        """An application frame arrived from the client."""

    def closed(self, code: int, reason: str, *, by_client: bool) -> None:
        """The connection ended; `by_client`: the client closed it on purpose."""


class Transport(Protocol):
    """One client connection as the hub sees it."""

    #: The wire's name: "websocket", "sse", "longpoll", ...
    name: str
    framing: Framing
    #: Where the client's frames go; frames a client sends on a side request (`POST
    #: E/send` for the HTTP transports) go there too. None once the connection ended.
    receiver: Receiver | None

    def write(self, data: bytes) -> None:
        """Queue framed bytes. Never blocks, never closes synchronously: a transport whose
        buffer is over its bound schedules its own close (slow consumer)."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection with a disconnect code (docs/protocol.md "Close codes")."""


def write_failed(transport: Transport) -> None:
    """A write to `transport` raised (call it in the `except` block): logged, and that
    connection closed with 1011 (its client comes back and recovers by position). Fan-out
    goes on with the others: one connection's failure never keeps a message from another."""
    log.exception("writing to a %s connection failed", transport.name)
    try:
        transport.close(1011, "internal error")
    except Exception:
        log.exception("closing a %s connection failed", transport.name)
