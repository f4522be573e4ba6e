"""Helpers shared by test modules (test modules import from here, never from each other)."""

from __future__ import annotations

import os
from typing import Final

from websockets.typing import Subprotocol

from pushwire.core.transport import Framing, Receiver

#: What a WebSocket client offers to speak pushwire.v1 (`websockets`' `subprotocols=`).
PUSHWIRE_V1: Final = [Subprotocol("pushwire.v1")]

#: Debian's real Chromium, driven by Playwright (never a downloaded browser), and its flags.
CHROMIUM: Final = os.environ.get("PUSHWIRE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class RecordingTransport:
    """The process edge: a transport that keeps what the hub wrote to it."""

    name = "recording"

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.written: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.receiver: Receiver | None = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
