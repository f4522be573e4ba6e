"""What a connecting client says (`ConnectRequest`) and who it is (`Identity`), made once per
connection; `slot_setters` builds them (and the endpoint's `ClientInfo`) cheaply, and
`new_request` and `new_identity` more cheaply still, where a handshake makes them.

A frozen dataclass's own `__init__` stores each field through `object.__setattr__` (the frozen
class forbids its own), about 0.2 µs a field: these classes, made for every handshake, write
their slots through the slots' descriptors instead, about half of that. They stay frozen
dataclasses: `replace`, equality, hashing and `repr` are the generated ones.

The factories go further: they fill a plain object with the same slots (`writable_twin`),
whose attribute stores the interpreter does inline, then make it an instance of the frozen
class (`__class__` assignment, allowed between classes of the same layout). A
`ConnectRequest` made so cost 3.1k instructions, with its `__init__` 7.7k (valgrind).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "ConnectRequest",
    "Identity",
    "new_identity",
    "new_request",
    "slot_setters",
    "writable_twin",
]

#: A default that stands for "a new empty dict" (the fields' `default_factory=dict`).
_FRESH: Final[Mapping[str, Any]] = MappingProxyType({})


def slot_setters(cls: type, *names: str) -> tuple[Callable[[object, object], None], ...]:
    """The setters of `cls`'s slots `names`, in that order: what a frozen slotted dataclass's
    own `__init__` calls to store its fields without `object.__setattr__`."""
    return tuple(cls.__dict__[name].__set__ for name in names)


def writable_twin(cls: type) -> type:
    """A plain class with the slots of `cls` (a frozen slotted dataclass), in the same order:
    an instance of it is filled by plain attribute stores, then made a `cls` by assigning
    its `__class__` (the layouts are the same; `cls`'s own `__setattr__` is never asked)."""
    return type(f"_{cls.__name__}Fields", (), {"__slots__": cls.__dict__["__slots__"]})


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


_new = object.__new__
_RequestFields: Final = writable_twin(ConnectRequest)
_IdentityFields: Final = writable_twin(Identity)


def new_request(
    path: str,
    transport: str,
    headers: list[tuple[str, str]],
    query: Mapping[str, str],
    user: str | None = None,
    token: str | None = None,
    remote: str | None = None,
) -> ConnectRequest:
    """`ConnectRequest(...)` with a new empty `info`, made as the module docstring says (one
    for every handshake that asks a connect handler)."""
    request: Any = _new(_RequestFields)
    request.path = path
    request.transport = transport
    request.headers = headers
    request.query = query
    request.user = user
    request.token = token
    request.remote = remote
    request.info = {}
    request.__class__ = ConnectRequest
    return request  # type: ignore[no-any-return]


def new_identity(
    user: str | None,
    info: Mapping[str, Any],
    grants: frozenset[str],
    expires: float | None,
    forwarded: Mapping[str, str],
) -> Identity:
    """`Identity(user, info, grants, expires, forwarded)`, made as the module docstring says
    (one for every connection)."""
    made: Any = _new(_IdentityFields)
    made.user = user
    made.info = info
    made.grants = grants
    made.expires = expires
    made.forwarded = forwarded
    made.__class__ = Identity
    return made  # type: ignore[no-any-return]
