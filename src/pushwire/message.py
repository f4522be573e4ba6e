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


# Not frozen: one is made per published message, and a frozen dataclass's __init__ costs
# 3-4x as much (it sets each field through object.__setattr__). Nothing mutates one.
@dataclass(slots=True)
class Message:
    """A channel message as the broker delivered it; shared by every subscriber, read only."""

    channel: str
    epoch: str
    offset: int
    data: Data

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)
