"""The values that travel through the hub and the broker: messages and stream positions."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Data", "Message", "Position"]

#: An application message: `str` is text, `bytes` is binary, and each stays what it is.
Data = str | bytes


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: offsets grow by one per message within an epoch.

    A different epoch means the stream was reset and offsets restarted.
    """

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    """A channel message as the broker delivered it."""

    channel: str
    epoch: str
    offset: int
    data: Data

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)
