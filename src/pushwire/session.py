"""One client as the hub knows it, whatever transport carries it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from .message import Data
from .transports.base import Transport

__all__ = ["Session", "new_session_id"]


def new_session_id() -> str:
    """128 random bits, URL-safe base64 (22 characters): unguessable."""
    return secrets.token_urlsafe(16)


class Session:
    """A connected client: its id, user, transport, channels and direct-message counter.

    `info` is whatever the app's connect handler attached (shown to the app, never sent).
    """

    __slots__ = ("channels", "closed", "id", "info", "presence", "seq", "transport", "user")

    def __init__(
        self,
        transport: Transport,
        user: str | None = None,
        info: Mapping[str, Any] | None = None,
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or new_session_id()
        self.user = user
        self.info: Mapping[str, Any] = info or {}
        self.transport = transport
        self.channels: set[str] = set()
        self.presence: set[str] = set()
        self.seq = 0
        self.closed = False

    def send(self, data: Data) -> None:
        """Send a direct message to this session alone."""
        if self.closed:
            return
        self.seq += 1
        self.transport.write(self.transport.framing.frame_direct(self.seq, data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session's connection; the hub forgets it when the transport reports it."""
        self.transport.close(code, reason)

    def __repr__(self) -> str:
        return f"<Session {self.id} user={self.user!r} via {self.transport.name}>"
