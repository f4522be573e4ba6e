"""Helpers shared by test modules (test modules import from here, never from each other)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Final

import httpx
from websockets.typing import Subprotocol

import pushwire
from pushwire.core.transport import Framing, Receiver
from pushwire.transports.poll import PollTransport

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


class RecordingReceiver:
    """The process edge on the other side: a receiver that keeps what a transport gave it."""

    def __init__(self) -> None:
        self.received: list[str | bytes] = []
        self.closes: list[tuple[int, str, bool]] = []

    def open(self) -> None:
        return None

    def receive(self, data: str | bytes) -> None:
        self.received.append(data)

    def closed(self, code: int, reason: str, *, by_client: bool) -> None:
        self.closes.append((code, reason, by_client))


async def held_poll(
    hub: pushwire.Hub, http: httpx.AsyncClient, url: str
) -> asyncio.Task[httpx.Response]:
    """Open a long-poll session at `url` (…/pushwire/longpoll) and hold a poll of it: the
    task of the held request, once the server holds it."""
    opened = await http.post(url, content=json.dumps({"type": "hello", "user": "lea"}))
    assert opened.status_code == 200
    welcome = json.loads(opened.content.splitlines()[0])
    headers = {"Pushwire-Session": f"{welcome['session']} {welcome['resume']}"}
    cursor = opened.headers["Pushwire-Cursor"]
    poll = asyncio.create_task(http.get(f"{url}?cursor={cursor}", headers=headers))
    session = hub.sessions.get(welcome["session"])
    assert session is not None
    while not (isinstance(session.transport, PollTransport) and session.transport.held):
        assert not poll.done(), poll.result()
        await asyncio.sleep(0.01)  # the request is on its way: nothing to await but its arrival
    return poll
