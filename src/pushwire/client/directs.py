"""Direct messages: where the client stands in its user's inbox on the server, and which
direct messages are new. No I/O: the client feeds it what arrives.

The server keeps each user's direct messages in an inbox with positions (epoch, offset), as
a channel keeps its history. Every `hello` names the last position the client has (`inbox`),
so a resumed session, a new one after the old one expired, or a client that was away gets
what it missed, or a `gap` saying exactly what the inbox no longer holds.
"""

from __future__ import annotations

import base64

from .errors import Gap, Message
from .transports.base import Envelope

__all__ = ["DirectPosition", "message_data"]


def message_data(envelope: Envelope, data: bytes | None) -> str | bytes:
    """A `message` envelope's data: the raw bytes after a binary frame's header, `data64`
    decoded, or `data` (text)."""
    if data is not None:
        return data
    if "data64" in envelope:
        return base64.b64decode(envelope["data64"])
    text: str = envelope.get("data", "")
    return text


class DirectPosition:
    """The last position of the user's inbox this client has (no epoch: none yet)."""

    def __init__(self, since: tuple[str, int] | None = None) -> None:
        self.epoch: str | None = since[0] if since is not None else None
        self.offset = since[1] if since is not None else 0

    @property
    def position(self) -> tuple[str, int] | None:
        """(epoch, offset), or None before the server said where the inbox stands."""
        return None if self.epoch is None else (self.epoch, self.offset)

    def hello(self) -> Envelope | None:
        """What a `hello` names as `inbox`: the last position, if any."""
        if self.epoch is None:
            return None
        return {"epoch": self.epoch, "offset": self.offset}

    def started(self, inbox: object) -> None:
        """The welcome's `inbox` (None: no user, no inbox): where the client stands in the
        inbox. A client without a position starts there; one with a position keeps it (the
        server replays what follows it, or says what is lost)."""
        if self.epoch is None and isinstance(inbox, dict):
            self.epoch, self.offset = inbox["epoch"], inbox["offset"]

    def arrived(self, epoch: str, offset: int) -> tuple[bool, Gap | None]:
        """Whether the direct message at (epoch, offset) is new (False: a replay, seen
        already), and the messages it shows lost (the server reports every loss with a
        `gap` first: this only catches what it could not, e.g. a new epoch appearing live).
        A new message is the last position from now on."""
        if self.epoch == epoch and offset <= self.offset:
            return False, None
        gap = None
        if self.epoch is not None and (self.epoch != epoch or offset > self.offset + 1):
            gap = Gap(None, self.epoch, self.offset, epoch, offset - 1)
        self.epoch, self.offset = epoch, offset
        return True, gap

    def received(self, data: str | bytes, envelope: Envelope) -> list[Message | Gap]:
        """What a `message` without a channel gives the app: a direct message of the
        user's inbox if new (after a `Gap` if it shows one), none if seen already; without
        a position, a message to this session only (an echo)."""
        epoch, offset = envelope.get("epoch"), envelope.get("offset")
        if not isinstance(epoch, str) or not isinstance(offset, int):
            return [Message(data)]
        fresh, gap = self.arrived(epoch, offset)
        items: list[Message | Gap] = [] if gap is None else [gap]
        if fresh:
            items.append(Message(data, None, epoch, offset))
        return items

    def skip(self, envelope: Envelope) -> Gap:
        """The server's `gap` for direct messages: the inbox lost them; the position moves
        past them."""
        start, end = envelope["from"], envelope["to"]
        self.epoch, self.offset = end["epoch"], end["offset"]
        return Gap(None, start["epoch"], start["offset"], end["epoch"], end["offset"])
