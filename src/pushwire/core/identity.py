"""Who a client is and what it may join: the app's connect and subscribe handlers.

Every way in (each transport, the TCP port) asks the same two questions here: `identify` runs
the connect handler on a `ConnectRequest` and gets an `Identity` (a user id and the public
info presence shows), `authorize_subscribe` checks a channel name and the subscription bound,
then runs the subscribe handler.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..config import Config
from ..errors import BadRequest, Forbidden, LimitReached, PresenceInfoTooLarge
from .sessions import Session
from .tasks import maybe_await

__all__ = [
    "Access",
    "ConnectHandler",
    "ConnectRequest",
    "Identity",
    "SubscribeHandler",
    "check_channel",
]

_CHANNEL_NAME: Final = re.compile(r"[A-Za-z0-9_\-.:@#]+")


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What the connect handler sees of a connecting client."""

    path: str
    transport: str
    headers: list[tuple[str, str]]
    query: Mapping[str, str]
    user: str | None = None
    token: str | None = None
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connecting client is: its user id and the public info others see (presence)."""

    user: str | None
    info: Mapping[str, Any] = field(default_factory=dict)


ConnectHandler = Callable[[ConnectRequest], Any]
SubscribeHandler = Callable[[Session, str], "bool | Awaitable[bool | None] | None"]


def check_channel(channel: object, max_length: int) -> str:
    """The channel name if valid: 1 to `max_length` characters of `[A-Za-z0-9_-.:@#]`.

    Raises:
        BadRequest: anything else.
    """
    if (
        not isinstance(channel, str)
        or not 0 < len(channel) <= max_length
        or not _CHANNEL_NAME.fullmatch(channel)
    ):
        raise BadRequest(f"invalid channel name {channel!r}")
    return channel


class Access:
    """The app's connect and subscribe handlers, and the bounds checked before them.

    Args:
        config: `max_channel_name`, `max_subscriptions`, `max_presence_info`.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        #: Set by `Hub.on_connect`; None: a client is who its request says (`user=`).
        self.connect_handler: ConnectHandler | None = None
        #: Set by `Hub.on_subscribe`; None: every valid channel is open.
        self.subscribe_handler: SubscribeHandler | None = None

    @property
    def has_connect_handler(self) -> bool:
        return self.connect_handler is not None

    def check_channel(self, channel: object) -> str:
        """The channel name if valid. Raises `BadRequest` otherwise."""
        return check_channel(channel, self._config.max_channel_name)

    async def authorize(self, request: ConnectRequest) -> str | None:
        """Run the connect handler: the user id to use, or `Forbidden` (see `identify`)."""
        return (await self.identify(request)).user

    async def identify(self, request: ConnectRequest) -> Identity:
        """Run the connect handler: who the client is, or `Forbidden`.

        Raises:
            Forbidden: the handler refused.
            PresenceInfoTooLarge: the info's JSON is over `max_presence_info` bytes.
            TypeError: the handler returned something else than documented (`Hub.on_connect`).
        """
        if self.connect_handler is None:
            return Identity(request.user)
        result = await maybe_await(self.connect_handler(request))
        if result is None or isinstance(result, str):
            return Identity(result)
        if isinstance(result, Identity):
            identity = result
        elif isinstance(result, Mapping):
            user, info = result.get("user"), result.get("info", {})
            if user is not None and not isinstance(user, str):
                raise TypeError(f"connect handler's user must be str or None, not {type(user)}")
            if not isinstance(info, Mapping):
                raise TypeError(f"connect handler's info must be a mapping, not {type(info)}")
            identity = Identity(user, info)
        else:
            raise TypeError(
                f"connect handler must return str, None, a mapping or Identity, not {type(result)}"
            )
        try:
            size = len(orjson.dumps(identity.info))
        except TypeError as exc:
            raise TypeError(f"connect handler's info is not JSON: {exc}") from exc
        limit = self._config.max_presence_info
        if size > limit:
            raise PresenceInfoTooLarge(f"presence info over size limit ({size} > {limit} bytes)")
        return identity

    async def authorize_subscribe(self, session: Session, channel: str) -> None:
        """Validate and run the subscribe handler.

        Raises:
            BadRequest: invalid channel name.
            Forbidden: the app's subscribe handler refused.
            LimitReached: the session is in `max_subscriptions` channels already.
        """
        self.check_channel(channel)
        limit = self._config.max_subscriptions
        if channel not in session.channels and len(session.channels) >= limit:
            raise LimitReached(f"subscription limit reached ({limit} channels)")
        if self.subscribe_handler is not None:
            allowed = await maybe_await(self.subscribe_handler(session, channel))
            if allowed is False:
                raise Forbidden(f"subscription to {channel!r} refused")
