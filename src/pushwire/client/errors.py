"""What the Python client raises, and the values it hands to the application.

The tree: `ClientError` is the base; `RequestFailed` (one request failed, the client goes on),
`ClientClosed` (the client is closed for good), `ConnectionLost` (internal: one connection
ended; the client reconnects or turns it into `ClientClosed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Failure",
    "Gap",
    "Join",
    "Leave",
    "Member",
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

    The client retries `unavailable`, `timeout` and `disconnected` by itself where that is
    safe (`Client`'s `retry`): raised with one of those, the request was given up after its
    last attempt (the message says how many), and `on_error` was told.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ClientClosed(ClientError):
    """The client is closed for good: raised by `recv()` once every message received before
    was read, and by every request after. `code` is a close code of docs/protocol.md: 1000
    after `close()`, the server's code when it closed with a "do not reconnect" code, or the
    code of the last drop when reconnecting was off or gave up (`max_reconnect_attempts`).

    `retry_after`: the server asked the client to back off (4029: over a rate or a bound,
    HTTP 429, or 503 with `Retry-After`) for that many seconds before it tries again (at most
    60); None otherwise. A first connection that is refused so is not retried by itself:
    the app may wait that long and connect again.
    """

    def __init__(self, code: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class ConnectionLost(ClientError):
    """A transport's connection ended (internal: the client reconnects or closes).

    `retry_after`, `error`: the server asked the client to back off that many seconds (a
    refusal: HTTP 429, 503 with `Retry-After`, an `error` `limit` or `rate_limited` at the
    hello), with that error code; None when it did not say.
    """

    def __init__(
        self,
        code: int,
        reason: str,
        retry_after: float | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(f"connection lost: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason
        self.retry_after = retry_after
        self.error = error


@dataclass(frozen=True, slots=True)
class Message:
    """A message: `str` data is text, `bytes` binary. Channel messages carry `channel`,
    `epoch` and `offset`; direct messages to the user carry `epoch` and `offset`, their place
    in the user's inbox (`channel` None); an echo carries neither."""

    data: str | bytes
    channel: str | None = None
    epoch: str | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """One session in a channel: `member` is its public id (one user with two tabs is two
    members), `user` its user id (None when anonymous), `info` what the server's connect
    handler attached to it."""

    member: str
    user: str | None
    info: dict[str, Any]

    def __hash__(self) -> int:
        return hash(self.member)


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is in a channel (subscribed with `presence=True`), on every node of the server:
    `count` sessions, `members` by public id (at most the server's bound: `truncated` says
    that more are in the channel than listed). `Client.presence[channel]` is the latest;
    `Client.wait_presence()` returns one."""

    channel: str
    count: int
    members: dict[str, Member] = field(default_factory=dict)
    truncated: bool = False

    @property
    def users(self) -> list[str]:
        """The distinct user ids present, sorted (anonymous members left out)."""
        return sorted({m.user for m in self.members.values() if m.user is not None})


@dataclass(frozen=True, slots=True)
class Join:
    """`member` joined `channel`, which has `count` sessions now."""

    channel: str
    member: Member
    count: int


@dataclass(frozen=True, slots=True)
class Leave:
    """`member` left `channel` (or its server died and its entry expired); `count` now."""

    channel: str
    member: Member
    count: int


@dataclass(frozen=True, slots=True)
class Gap:
    """History could not reach back: the messages after `from_epoch:from_offset` up to and
    including `to_epoch:to_offset` are lost (docs/protocol.md, "gap"): of `channel`, or, when
    it is None, the user's direct messages (its inbox no longer held them)."""

    channel: str | None
    from_epoch: str
    from_offset: int
    to_epoch: str
    to_offset: int


@dataclass(frozen=True, slots=True)
class Failure:
    """Something the client did for the app failed for good: handed to `on_error`, and,
    when no awaited call raises it (a re-subscription, a refusal), read from the message
    stream (`recv()`, `async for`) where it happened.

    `operation` says what failed:

    - `subscribe`: re-subscribing `channel` after a reconnection (or subscribing it) was
      refused, or failed `attempts` times for a retryable reason: the channel is no longer
      subscribed and no message of it arrives until the app subscribes again;
    - `publish`: a publish to `channel` failed `attempts` times (`publish()` raised too);
    - `send`: no connection for a `send` within the retries (`send()` raised too);
    - `server`: an `error` envelope that answers no request, most often a refused `send`
      (which has no answer otherwise: `code` and `message` say why);
    - `connect`: the server told the client to back off (`rate_limited`: HTTP 429 or close
      4029 after a rate; `limit`: a bound of sessions or connections, HTTP 503 with
      `Retry-After` or close 4029): the client waits `retry_after` seconds (at most 60) at
      least before its next attempt, and goes on reconnecting. Handed to `on_error` only
      (not to the message stream: nothing was given up).

    `code` and `message` are `RequestFailed`'s (docs/protocol.md, "Error codes").
    """

    operation: str
    code: str
    message: str
    channel: str | None = None
    attempts: int = 1
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """The answer to `subscribe`: the channel's position when the subscription began."""

    channel: str
    epoch: str
    offset: int
