"""What every client transport is: the `ClientTransport` interface, the envelope types, the
size bounds, and the JSON text form the text transports share."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Final, TypeVar

from ..errors import ConnectionLost

__all__ = [
    "MAX_FRAME",
    "MAX_HEAD",
    "SILENT_HEARTBEATS",
    "ClientTransport",
    "Envelope",
    "Item",
    "decode_text",
    "encode_json",
    "encode_text",
]

Envelope = dict[str, Any]
Item = tuple[Envelope, bytes | None]
_T = TypeVar("_T")

#: Bytes of one HTTP response head the client accepts.
MAX_HEAD: Final = 64 * 1024
#: Largest frame or line the client accepts (a message of 1 MiB plus its envelope).
MAX_FRAME: Final = 4 * 1024 * 1024
#: Heartbeats (the welcome's `heartbeat`) without a byte after which a connection that does
#: not end by itself (stream, sse, tcp) is dropped as dead; a `ping` goes out after the first.
SILENT_HEARTBEATS: Final = 2


class ClientTransport:
    """What the client needs of a transport."""

    name = "transport"

    def __init__(self) -> None:
        self.session: str | None = None
        #: The session's resume secret, from the welcome: it proves the session is ours.
        self.secret: str | None = None
        #: Seconds between the server's heartbeats on this connection, from the welcome.
        self.heartbeat: float | None = None

    async def open(self, hello: Envelope, timeout: float) -> None:
        """Connect and send `hello`. Raises `ConnectionLost` when it cannot."""
        raise NotImplementedError

    async def send(self, items: list[Item]) -> None:
        """Send envelopes in order. Raises `ConnectionLost`."""
        raise NotImplementedError

    async def receive(self) -> Item:
        """The next envelope. Raises `ConnectionLost` at the end of the connection."""
        raise NotImplementedError

    async def close(self, code: int = 1000) -> None:
        """End the connection (no `ConnectionLost` is raised for it)."""
        raise NotImplementedError

    async def _until_done_or_silent(self, read: asyncio.Future[_T]) -> None:
        """Wait for `read` (a read the transport keeps across cancelled `receive()`s); a
        `ping` after each `heartbeat` without it, and after SILENT_HEARTBEATS of them the
        connection is dropped (`_drop_silent`) and lost. No heartbeat known yet (before the
        welcome): wait as long as it takes."""
        silent = 0
        while not read.done():
            await asyncio.wait({read}, timeout=self.heartbeat)
            if read.done():
                return
            silent += 1
            if silent >= SILENT_HEARTBEATS:
                await self._drop_silent()
                raise ConnectionLost(
                    1006, f"{self.name}: nothing for {silent} heartbeats of {self.heartbeat:g} s"
                )
            self._ping()

    def _ping(self) -> None:
        """Ask the server for a sign of life without waiting (`_until_done_or_silent`)."""
        raise NotImplementedError

    async def _drop_silent(self) -> None:
        """End a connection taken for dead (`_until_done_or_silent`)."""
        raise NotImplementedError

    def _learn(self, envelope: Envelope) -> None:
        if envelope.get("type") == "welcome" and isinstance(envelope.get("session"), str):
            self.session = envelope["session"]
            secret = envelope.get("resume")
            self.secret = secret if isinstance(secret, str) else None
            heartbeat = envelope.get("heartbeat")
            if isinstance(heartbeat, int | float) and heartbeat > 0:
                self.heartbeat = float(heartbeat)


def encode_json(envelope: Envelope) -> bytes:
    """An envelope as compact JSON."""
    return json.dumps(envelope, separators=(",", ":")).encode()


def encode_text(envelope: Envelope, data: bytes | None) -> bytes:
    """An envelope as JSON text; binary data as data64 (the text transports)."""
    if data is not None:
        envelope = {**envelope, "data64": base64.b64encode(data).decode("ascii")}
    return encode_json(envelope)


def decode_text(line: bytes) -> Item:
    """An envelope from its JSON text. Raises `ConnectionLost` (4100) for text that is not
    JSON, or without a type."""
    try:
        envelope = json.loads(line)
    except ValueError as exc:  # JSON or UTF-8: what the reading loop must see as a drop
        raise ConnectionLost(4100, f"the server sent text that is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        raise ConnectionLost(4100, "the server sent an envelope without a type")
    return envelope, None
