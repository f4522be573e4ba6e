"""Helpers shared by test modules (test modules import from here, never from each other)."""

from __future__ import annotations

from pushwire.core.transport import Framing


class RecordingTransport:
    """The process edge: a transport that keeps what the hub wrote to it."""

    name = "recording"

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.written: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
