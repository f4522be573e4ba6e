"""What the Python client raises, and the values it hands to the application.

The tree: `ClientError` is the base; `RequestFailed` (one request failed, the client goes on),
`ClientClosed` (the client is closed for good), `ConnectionLost` (internal: one connection
ended; the client reconnects or turns it into `ClientClosed`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Gap",
    "Message",
    "Presence",
    "RequestFailed",
    "Subscription",
]


class ClientError(Exception):
    """Base class of everything the client raises."""


class RequestFailed(ClientError):
    """A request (subscribe, unsubscribe, publish) failed; the client stays usable.

    `code` is the server's error code (docs/protocol.md: `bad_request`, `forbidden`, `limit`,
    `too_large`, ...) when it answered with an `error` envelope, or one of the client's own:

    - `timeout`: no answer within `request_timeout`; the request may or may not have been
      carried out;
    - `disconnected`: no connection within `request_timeout`, or the connection dropped
      before the answer; the request may or may not have been carried out (a subscription
      is made on reconnection anyway).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ClientClosed(ClientError):
    """The client is closed for good: raised by `recv()` once every message received before
    was read, and by every request after. `code` is a close code of docs/protocol.md: 1000
    after `close()`, the server's code when it closed with a "do not reconnect" code, or the
    code of the last drop when reconnecting was off or gave up (`max_reconnect_attempts`)."""

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
class Presence:
    """A channel's number of sessions, as a `presence` envelope reported it (channels
    subscribed with `presence=True`); `Client.wait_presence()` returns it."""

    channel: str
    count: int


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
