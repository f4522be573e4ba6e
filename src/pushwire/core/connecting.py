"""What a connecting client says (`ConnectRequest`) and who it is (`Identity`), made once per
connection; `slot_setters` builds them (and the endpoint's `ClientInfo`) cheaply.

A frozen dataclass's own `__init__` stores each field through `object.__setattr__` (the frozen
class forbids its own), about 0.2 µs a field: these classes, made for every handshake, write
their slots through the slots' descriptors instead, about half of that. They stay frozen
dataclasses: `replace`, equality, hashing and `repr` are the generated ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

__all__ = ["ConnectRequest", "Identity", "slot_setters"]

#: A default that stands for "a new empty dict" (the fields' `default_factory=dict`).
_FRESH: Final[Mapping[str, Any]] = MappingProxyType({})


def slot_setters(cls: type, *names: str) -> tuple[Callable[[object, object], None], ...]:
    """The setters of `cls`'s slots `names`, in that order: what a frozen slotted dataclass's
    own `__init__` calls to store its fields without `object.__setattr__`."""
    return tuple(cls.__dict__[name].__set__ for name in names)


@dataclass(frozen=True, slots=True, init=False)
class ConnectRequest:
    """What the connect handler sees of a connecting client.

    `user` is the user the connection token (or the connect proxy) proved once
    authentication is configured (None without one), and the user the client claims in an
    open server; `info` is the public info the token or the proxy gave. `token` is the
    credential as sent, for a handler that checks it itself.
    """

    path: str
    transport: str
    headers: list[tuple[str, str]]
    query: Mapping[str, str]
    user: str | None = None
    token: str | None = None
    remote: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        path: str,
        transport: str,
        headers: list[tuple[str, str]],
        query: Mapping[str, str],
        user: str | None = None,
        token: str | None = None,
        remote: str | None = None,
        info: Mapping[str, Any] = _FRESH,
    ) -> None:
        _request_path(self, path)
        _request_transport(self, transport)
        _request_headers(self, headers)
        _request_query(self, query)
        _request_user(self, user)
        _request_token(self, token)
        _request_remote(self, remote)
        _request_info(self, {} if info is _FRESH else info)


(
    _request_path,
    _request_transport,
    _request_headers,
    _request_query,
    _request_user,
    _request_token,
    _request_remote,
    _request_info,
) = slot_setters(
    ConnectRequest, "path", "transport", "headers", "query", "user", "token", "remote", "info"
)


@dataclass(frozen=True, slots=True, init=False)
class Identity:
    """Who a connecting client is: its user id and the public info others see (presence),
    the channels its token lets it read whatever their rule (`grants`), and when its
    token expires (seconds since the epoch; None: never). `forwarded` are the request
    headers the subscribe proxy passes on to the app's backend (kept with the session; not
    shown, not compared)."""

    user: str | None
    info: Mapping[str, Any] = field(default_factory=dict)
    grants: frozenset[str] = frozenset()
    expires: float | None = None
    forwarded: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __init__(
        self,
        user: str | None,
        info: Mapping[str, Any] = _FRESH,
        grants: frozenset[str] = frozenset(),
        expires: float | None = None,
        forwarded: Mapping[str, str] = _FRESH,
    ) -> None:
        _identity_user(self, user)
        _identity_info(self, {} if info is _FRESH else info)
        _identity_grants(self, grants)
        _identity_expires(self, expires)
        _identity_forwarded(self, {} if forwarded is _FRESH else forwarded)


(
    _identity_user,
    _identity_info,
    _identity_grants,
    _identity_expires,
    _identity_forwarded,
) = slot_setters(Identity, "user", "info", "grants", "expires", "forwarded")
