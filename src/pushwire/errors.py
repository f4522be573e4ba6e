"""Every exception pushwire raises, in one tree, each with its wire mapping.

`RemoteError`: the peer broke a rule; it is answered (HTTP status, close code or error
envelope) and the server carries on. `LocalError`: our own API was misused.
"""

from __future__ import annotations

import math
from typing import ClassVar, Final

#: Characters of an error's message at most (`str(exc)`): a message that quotes what a client
#: sent must not grow with it (the quote itself is cut shorter, `parsing.quoted`).
MAX_MESSAGE: Final = 300


class PushwireError(Exception):
    """Base class of everything pushwire raises. Its message (`str`) is at most
    `MAX_MESSAGE` characters, whatever it was made with."""

    http_status: ClassVar[int] = 500
    close_code: ClassVar[int] = 1011
    error_code: ClassVar[str] = "internal"

    def __str__(self) -> str:
        message = super().__str__()
        return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


class RemoteError(PushwireError):
    """The peer broke the protocol. Answer it, log at debug, keep serving others."""

    http_status = 400
    close_code = 1002
    error_code = "bad_request"


class BadRequest(RemoteError):
    """A malformed HTTP request or envelope."""

    close_code = 4100


class UnknownType(BadRequest):
    """An envelope whose `type` the server does not know."""

    error_code = "unknown_type"


class HeadersTooLarge(RemoteError):
    http_status = 431
    close_code = 1009


class BodyTooLarge(RemoteError):
    http_status = 413
    close_code = 1009
    error_code = "too_large"


class MessageTooLarge(RemoteError):
    http_status = 413
    close_code = 1009
    error_code = "too_large"


class PresenceInfoTooLarge(RemoteError):
    """The public info attached to a session is over `max_presence_info` bytes. The client
    should not come back with the same: close 4100."""

    http_status = 400
    close_code = 4100
    error_code = "too_large"


class RequestTimeout(RemoteError):
    """A request head, body or frame that did not arrive in time (`header_timeout`,
    `body_timeout`), or arrived slower than `min_receive_rate`."""

    http_status = 408
    close_code = 1008


class VersionNotSupported(RemoteError):
    """A request line with an HTTP version other than 1.0 and 1.1 (RFC 9110 15.6.6)."""

    http_status = 505


class NotFound(RemoteError):
    http_status = 404
    error_code = "not_found"


class MethodNotAllowed(RemoteError):
    """A method the path does not take; `allow` lists those it does (the Allow header)."""

    http_status = 405

    def __init__(self, message: str, allow: str = "GET, HEAD") -> None:
        super().__init__(message)
        self.allow = allow


class UpgradeRequired(RemoteError):
    """The WebSocket version is not 13 (RFC 6455 4.4: answer 426 with the version)."""

    http_status = 426


class Forbidden(RemoteError):
    """An app handler or the Origin policy refused."""

    http_status = 403
    close_code = 4101
    error_code = "forbidden"


class Unauthorized(RemoteError):
    """No valid credential: a missing, malformed, wrongly signed or refused token. The client
    should not come back with the same one (close 4102)."""

    http_status = 401
    close_code = 4102
    error_code = "unauthorized"


class TokenExpired(Unauthorized):
    """The client's token expired: it gets a new one, then reconnects (close 4005, in the
    reconnect range; a `refresh` envelope before `exp` avoids it)."""

    close_code = 4005
    error_code = "token_expired"


class MisdirectedRequest(RemoteError):
    """The request's Host names a site this server does not serve (the allowed hosts): a
    page whose DNS name an attacker pointed at the server (DNS rebinding).

    421 rather than 403 (RFC 9110 15.5.20): nothing is wrong with who asks, the request
    reached a server that is not authoritative for the name it asked for.
    """

    http_status = 421
    error_code = "misdirected"


class LimitReached(RemoteError):
    """A count bound (subscriptions, connections) was reached."""

    http_status = 503
    close_code = 4000
    error_code = "limit"


class RateLimited(RemoteError):
    """A client went over a rate (messages or bytes a second of a session, handshakes a
    second of an address): answered 429 with `Retry-After`, an `error` `rate_limited`, or
    close 4029 (reconnect after a backoff)."""

    http_status = 429
    close_code = 4029
    error_code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        #: Seconds before trying again makes sense (the `Retry-After` of an HTTP answer).
        self.retry_after = retry_after


class TooManySessions(LimitReached):
    """A session bound was reached (sessions in total, of one address, of one user): 503
    with `Retry-After`, or `error` `limit` and close 4029 (reconnect after a backoff)."""

    close_code = 4029
    retry_after = 5.0


def backoff_seconds(exc: BaseException) -> int | None:
    """Whole seconds (at least 1) a client refused with `exc` should wait before it tries
    again: the `Retry-After` of an HTTP answer, the `retry_after` of an `error` envelope;
    None for a refusal that says no time."""
    if isinstance(exc, RateLimited | TooManySessions):
        return max(1, math.ceil(exc.retry_after))
    return None


class UserIdTooLong(BadRequest):
    """A user id over `max_user_id` characters (claimed, or given by a token or a handler)."""

    error_code = "too_large"


class IncompleteFrame(RemoteError):
    """A frame began but did not finish within `header_timeout` (the TCP transport)."""

    close_code = 4100


class Gone(RemoteError):
    """The session is unknown or expired: the client opens a new one (and tells the app)."""

    http_status = 410
    error_code = "session_unknown"


class NotConnected(RemoteError):
    """The session exists but has no connection to answer on right now."""

    http_status = 409
    error_code = "not_connected"


class NotSupported(RemoteError):
    """A call this server cannot carry out as it runs (`/api/disconnect` with a broker that
    spans processes): 501, whoever asks."""

    http_status = 501
    error_code = "not_supported"


class Unavailable(PushwireError):
    """The server cannot take this work now (shutting down, broker down)."""

    http_status = 503
    close_code = 1001
    error_code = "unavailable"


class BackendUnavailable(Unavailable):
    """The app's backend (the backend proxy) did not give a usable answer: it is down, did not
    answer within `proxy_timeout`, answered another status than 200 or something else than the
    documented JSON, or `proxy_max_concurrent` questions to it are in flight already. The
    client is refused and should come back later: close 1011 ("reconnect with backoff")."""

    close_code = 1011


class LocalError(PushwireError):
    """Our own API was misused."""


class ConfigError(LocalError, ValueError):
    """A setting that cannot be used as given (a malformed allowed origin or host): found at
    start, before anything is served."""


class InvalidState(LocalError):
    """An operation that the object's state does not allow: `InvalidState("session is closed")`."""


# -- what the HTTP API's client (`pushwire.api`) raises ---------------------------------------


class ApiError(PushwireError):
    """A call of the HTTP API failed. `status` is the HTTP status the server answered with
    (None: no answer came)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiRefused(ApiError):
    """The server answered the call with an error, its one-line reason in the message
    (`400 invalid channel name ...`): the same call would get the same answer."""


class ApiKeyRefused(ApiRefused):
    """401 or 403 from the API: no API key, a wrong one, or the API is off (a server with
    authentication and no API key)."""


class ApiUnavailable(ApiError):
    """No answer after every attempt (503, a lost connection, a timeout). A publish may have
    been published: calling it again with the same idempotency key publishes it at most
    once."""
