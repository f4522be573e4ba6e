"""What the Python client raises and returns besides messages."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Gap",
    "Message",
    "RequestFailed",
    "Subscription",
]


class ClientError(Exception):
    """Base class of everything the client raises."""


class RequestFailed(ClientError):
    """The server answered a request with an `error` envelope (`code` as in docs/protocol.md),
    or the connection dropped before the answer (`code` "disconnected": it may or may not
    have been carried out)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ClientClosed(ClientError):
    """The client is closed for good (`code` as the close codes in docs/protocol.md)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionLost(ClientError):
    """A transport's connection ended (internal: the client reconnects or closes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection lost: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    """A message: `str` data is text, `bytes` binary. Channel messages carry `channel`,
    `epoch` and `offset`; direct messages carry `seq`."""

    data: str | bytes
    channel: str | None = None
    epoch: str | None = None
    offset: int | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """History could not reach back: channel messages after `from_epoch:from_offset` up to
    and including `to_epoch:to_offset` are lost (docs/protocol.md, "gap")."""

    channel: str
    from_epoch: str
    from_offset: int
    to_epoch: str
    to_offset: int


@dataclass(frozen=True, slots=True)
class Subscription:
    """The answer to `subscribe`: the channel's position when the subscription began."""

    channel: str
    epoch: str
    offset: int
