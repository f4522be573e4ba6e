"""The values that travel through the hub and the broker: messages, stream positions, and
the idempotency keys that make a publish safe to retry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import BadRequest

__all__ = ["MAX_IDEMPOTENCY_KEY", "Data", "Message", "Position", "check_idempotency_key"]

#: Characters of an idempotency key, at most: it becomes part of a broker key (Redis).
MAX_IDEMPOTENCY_KEY: Final = 100
_IDEMPOTENCY_KEY: Final = re.compile(r"[A-Za-z0-9_.:-]+")

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


def check_idempotency_key(key: object) -> str | None:
    """A publish's idempotency key if valid: None (no key), or 1 to `MAX_IDEMPOTENCY_KEY`
    characters of `[A-Za-z0-9_.:-]` (a UUID, a ULID, base64url text all fit).

    Raises:
        BadRequest: anything else. The key is not quoted back: a client that puts a secret
            in it does not find it in a log.
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise BadRequest(f"idempotency key must be a string, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(
            f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} characters, not {len(key)}"
        )
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest("idempotency key may hold only A-Z a-z 0-9 _ . : -")
    return key
