"""Who a client is and what it may do: one path for every door.

Every way in (each transport, raw `/ws/<channel>` and `/sse/<channel>`, the TCP port, the
HTTP API) asks `Access` the same questions:

- **connect** (`connect`): who is this? A connection token (JWT, `pushwire.auth.tokens`)
  or the app's backend (the connect proxy, `pushwire.auth.proxy`) says so once
  authentication is configured, and a claimed `user` is then ignored; with both, a token is
  checked as a JWT and the backend is asked only about a client without one. In an open
  server the claimed user is taken as it is. The app's `on_connect` handler has the last word.
- **subscribe** (`check_subscribe`, then `subscribe_hooks`): may it read this channel? The
  channel's namespace rule (`pushwire.auth.namespaces`), a subscription token for a private
  channel, then the subscribe proxy, then the app's `on_subscribe` handler.
- **publish** (`check_publish`, then `publish_hooks`): may it write this channel? The rule,
  then the publish proxy, then the app's `on_publish` handler. The server itself (the HTTP
  API with its key, a handler calling `hub.publish`) may publish to any channel of a
  configured namespace.

The checks without a hook are synchronous and cost a dictionary lookup, so a door runs them
inline; the hooks (`*_hooked`: a proxy or an app handler) are awaited only when there is one.
Every refusal is logged once through `refusals`, rate-limited, without the credential.

The core does no I/O: the backend proxy is handed to `Access` as a `Proxy` (the HTTP client
behind it lives in `pushwire.auth.proxy`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final

import orjson

from ..auth.admin import STATS_CHANNEL, STATS_RULE, AdminTokens, admin_grants
from ..auth.namespaces import AUTHENTICATED, OPEN, Namespace, Namespaces, is_private
from ..auth.refusals import RefusalLog
from ..auth.tokens import TokenVerifier
from ..clock import Clock
from ..config import Config
from ..errors import (
    BackendUnavailable,
    BadRequest,
    Forbidden,
    InvalidState,
    LimitReached,
    PresenceInfoTooLarge,
    PushwireError,
    Unauthorized,
    UserIdTooLong,
)
from ..message import Data
from .backend import Proxy
from .channelname import check_channel
from .connecting import ConnectRequest, Identity, new_identity
from .sessions import Session
from .tasks import maybe_await

__all__ = [
    "Access",
    "ConnectHandler",
    "ConnectRequest",
    "Identity",
    "Proxy",
    "PublishHandler",
    "SubscribeHandler",
    "check_channel",
]

#: What a connect handler answers at once, mostly (`Access.connect_started`).
_PLAIN_ANSWERS: Final = (dict, str, type(None))
#: Stands for a connect handler's answer without "info".
_NO_INFO: Final[Mapping[str, Any]] = MappingProxyType({})
#: A connect's refusals (logged once through `refusals`).
_REFUSALS: Final = (Unauthorized, Forbidden, PresenceInfoTooLarge, BackendUnavailable)


#: Channels whose rule `check_subscribe` keeps (then it forgets them all, and starts again).
_KNOWN_CHANNELS: Final = 4096

#: What an open server proves before its connect handler names the user (`connect_started`).
_OPEN: Final = Identity(None, forwarded=MappingProxyType({}))

ConnectHandler = Callable[[ConnectRequest], Any]
SubscribeHandler = Callable[[Session, str], "bool | Awaitable[bool | None] | None"]
PublishHandler = Callable[[Session, str, Data], "bool | Awaitable[bool | None] | None"]


class Access:
    """The decisions of the module docstring, for one hub.

    Args:
        config: bounds (`max_channel_name`, `max_subscriptions`, `max_presence_info`) and
            `anonymous` (whether a connection without a token is let in once authentication
            is configured).
        clock: times the refusal log's rate.
        tokens: checks connection and subscription tokens; None: no JWT configured.
        namespaces: the channels' rules; None: one rule for every channel (open to anyone,
            or `authenticated` once authentication is configured).
        proxy: the app's backend, asked what its URLs are configured for (connect,
            subscribe, publish); None: no backend proxy.
    """

    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        tokens: TokenVerifier | None = None,
        namespaces: Namespaces | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        self._config = config
        self.tokens = tokens
        #: The backend proxy (closed by its owner at shutdown), and the decisions it takes.
        self.proxy = proxy
        self._connect_proxy = proxy if proxy is not None and proxy.connects else None
        self._subscribe_proxy = proxy if proxy is not None and proxy.subscribes else None
        self._publish_proxy = proxy if proxy is not None and proxy.publishes else None
        authenticating = tokens is not None or self._connect_proxy is not None
        self.namespaces = namespaces or Namespaces(None, AUTHENTICATED if authenticating else OPEN)
        self.refusals = RefusalLog(clock)
        #: Admin tokens (the admin page, `auth.admin`): with the page on and an API key.
        self.admin = AdminTokens.from_config(config)
        #: Set by `Hub.on_connect`; None: a client is who its token (or, open, its claim) says.
        self.connect_handler: ConnectHandler | None = None
        #: Whether `subscribe_hooks` has anything to run (the subscribe proxy, a handler):
        #: kept as `subscribe_handler` is set (each raw subscriber's opening asks it).
        self.subscribe_hooked = self._subscribe_proxy is not None
        self._subscribe_handler: SubscribeHandler | None = None
        #: Set by `Hub.on_publish`; None: the namespace rules decide alone.
        self.publish_handler: PublishHandler | None = None
        #: The rules of the valid public channels subscribed to lately (`_KNOWN_CHANNELS` at
        #: most), under `namespaces` (which made them): each is checked and looked up once.
        self._known: dict[str, Namespace] = {}
        self._known_for = self.namespaces

    @property
    def authenticating(self) -> bool:
        """Whether clients prove who they are (a claimed user is ignored): tokens or the
        connect proxy are configured."""
        return self.tokens is not None or self._connect_proxy is not None

    @property
    def has_connect_handler(self) -> bool:
        return self.connect_handler is not None

    @property
    def connect_hooked(self) -> bool:
        """Whether connecting must be awaited (the connect proxy, an app handler)."""
        return self.connect_handler is not None or self._connect_proxy is not None

    @property
    def subscribe_handler(self) -> SubscribeHandler | None:
        """Set by `Hub.on_subscribe`; None: the namespace rules decide alone."""
        return self._subscribe_handler

    @subscribe_handler.setter
    def subscribe_handler(self, handler: SubscribeHandler | None) -> None:
        self._subscribe_handler = handler
        self.subscribe_hooked = handler is not None or self._subscribe_proxy is not None

    @property
    def publish_hooked(self) -> bool:
        """Whether `publish_hooks` has anything to run (the publish proxy, a handler)."""
        return self.publish_handler is not None or self._publish_proxy is not None

    def check_channel(self, channel: object) -> str:
        """The channel name if valid. Raises `BadRequest` otherwise."""
        return check_channel(channel, self._config.max_channel_name)

    # -- connect ----------------------------------------------------------------------------

    async def connect(self, request: ConnectRequest) -> Identity:
        """Who the client is, or the refusal (logged).

        Raises:
            Unauthorized: no token where one is required, or an invalid one; or the connect
                proxy said so.
            TokenExpired: the token's `exp` has passed.
            Forbidden: the connect proxy or the connect handler refused.
            BackendUnavailable: the connect proxy gave no usable answer.
            PresenceInfoTooLarge: the info's JSON is over `max_presence_info` bytes.
            TypeError: the handler returned something else than documented (`Hub.on_connect`).
        """
        try:
            return await self._connect(request)
        except _REFUSALS as exc:
            self._refused(request, exc)
            raise

    def connect_started(self, request: ConnectRequest) -> Identity | Awaitable[Identity]:
        """`connect`, inline where nothing must be awaited (no connect proxy or admin token; a
        connect handler, if any, that answers at once), else an awaitable. Raises as `connect`."""
        if self._connect_proxy is not None or self.admin is not None:
            return self.connect(request)
        try:
            handler = self.connect_handler
            if handler is not None and self.tokens is None and self._subscribe_proxy is None:
                identity = _OPEN  # open: its handler names the user (the claim still bounded)
                claimed = request.user
                if claimed is not None and len(claimed) > self._config.max_user_id:
                    self._bounded_user(claimed)  # (raises; called only then: once a connection)
            else:
                request, identity = self._prepared(request, self._proved(request))
            if handler is None:
                return self._checked(identity)
            result = handler(request)  # (a plain answer skips `isawaitable`'s ABC check)
            if type(result) not in _PLAIN_ANSWERS and inspect.isawaitable(result):
                return self._connect_after(request, identity, result)
            return self._checked(_identity_of(result, identity))
        except _REFUSALS as exc:
            self._refused(request, exc)
            raise

    async def _connect_after(
        self, request: ConnectRequest, identity: Identity, answer: Awaitable[object]
    ) -> Identity:
        try:
            return self._checked(_identity_of(await answer, identity))
        except _REFUSALS as exc:
            self._refused(request, exc)
            raise

    def _refused(self, request: ConnectRequest, exc: PushwireError) -> None:
        self.refusals.refused(f"connect ({request.transport} {request.path})", exc, request.remote)

    def connect_now(self, request: ConnectRequest) -> Identity:
        """`connect` where nothing must be awaited (not `connect_hooked`): the token alone.

        Raises:
            Unauthorized, TokenExpired: as `connect`.
            InvalidState: the connect proxy decides (a door must await `connect`).
        """
        if self._connect_proxy is not None:
            raise InvalidState("the connect proxy decides who connects: await connect()")
        try:
            return self._proved(request)
        except Unauthorized as exc:
            self._refused(request, exc)
            raise

    def _proved(self, request: ConnectRequest) -> Identity:
        """Who the request's token proves the client is (in an open server: who it claims)."""
        if self.admin is not None and (expires := self.admin.expires(request.token)) is not None:
            return Identity(None, grants=admin_grants(frozenset(), True), expires=expires)
        if self.tokens is None:
            return Identity(self._bounded_user(request.user))
        if request.token is not None:
            claims = self.tokens.connection(request.token)
            user = self._bounded_user(claims.user)
            grants = admin_grants(claims.channels, claims.admin and self._config.admin)
            return Identity(user, claims.info, grants, claims.expires)
        if self._config.anonymous:
            return Identity(None)
        raise Unauthorized("a connection token is required")

    async def _connect(self, request: ConnectRequest) -> Identity:
        proxy = self._connect_proxy
        if self.admin is not None and self.admin.expires(request.token) is not None:
            return self._proved(request)  # an admin token: the admin page, no app code asked
        if proxy is not None and (self.tokens is None or request.token is None):
            admitted = await proxy.connect(
                transport=request.transport,
                path=request.path,
                remote=request.remote,
                user=request.user,
                token=request.token,
                headers=proxy.forwarded(request.headers),
            )
            grants = admin_grants(admitted.channels, False)
            identity = Identity(admitted.user, admitted.info, grants, admitted.expires)
        else:
            identity = self._proved(request)
        request, identity = self._prepared(request, identity)
        if self.connect_handler is not None:
            identity = _identity_of(await maybe_await(self.connect_handler(request)), identity)
        return self._checked(identity)

    def _prepared(
        self, request: ConnectRequest, identity: Identity
    ) -> tuple[ConnectRequest, Identity]:
        """The request as the connect handler sees it, and the identity proved so far."""
        if self.authenticating:  # the connect handler sees who the token or the proxy proved
            request = replace(request, user=identity.user, info=identity.info)
        if self._subscribe_proxy is not None:
            # Subscriptions come later, when the request is gone: its passed-on headers stay.
            identity = replace(identity, forwarded=self._subscribe_proxy.forwarded(request.headers))
        return request, identity

    def _checked(self, identity: Identity) -> Identity:
        """`identity` once its info and user are within their bounds."""
        try:
            size = len(orjson.dumps(identity.info))
        except TypeError as exc:
            raise TypeError(f"connect handler's info is not JSON: {exc}") from exc
        limit = self._config.max_presence_info
        if size > limit:
            raise PresenceInfoTooLarge(f"presence info over size limit ({size} > {limit} bytes)")
        user = identity.user  # a connect handler or the proxy may have named it
        if user is not None and len(user) > self._config.max_user_id:
            self._bounded_user(user)  # (raises)
        return identity

    def _bounded_user(self, user: str | None) -> str | None:
        """`user`, when at most `max_user_id` characters: presence lists it to every member
        (ten 1 MB ids made a 49-byte `presence` request answer 10 MB).

        Raises:
            UserIdTooLong: it is longer.
        """
        limit = self._config.max_user_id
        if user is not None and len(user) > limit:
            raise UserIdTooLong(f"user id over size limit ({len(user)} > {limit} characters)")
        return user

    async def identify(self, request: ConnectRequest) -> Identity:
        """`connect` under its former name."""
        return await self.connect(request)

    async def authorize(self, request: ConnectRequest) -> str | None:
        """The user id `connect` gives."""
        return (await self.connect(request)).user

    # -- subscribe --------------------------------------------------------------------------

    def check_subscribe(
        self, session: Session, channel: object, token: object = None
    ) -> tuple[str, Namespace]:
        """The channel and its rule when `session` may read it (before any app handler).

        Raises:
            BadRequest: an invalid channel name or token.
            LimitReached: the session is in `max_subscriptions` channels already.
            Forbidden: the rule refuses (an unknown namespace, a private channel without a
                valid subscription token, a channel for other users, ...).
        """
        try:
            config = self._config
            known = self._known
            if self._known_for is not self.namespaces:  # (replaced: what was known is not)
                known.clear()
                self._known_for = self.namespaces
            rule = known.get(channel) if type(channel) is str else None
            if rule is None:
                channel = check_channel(channel, config.max_channel_name)
            name: str = channel  # type: ignore[assignment]  # (checked, or known: checked before)
            if token is not None and not isinstance(token, str):
                raise BadRequest('"token" must be a string')
            limit = config.max_subscriptions
            channels = session.channels
            if len(channels) >= limit and name not in channels:
                raise LimitReached(f"subscription limit reached ({limit} channels)")
            private = False
            if rule is None:
                if name == STATS_CHANNEL and name not in session.grants:  # admin sessions only
                    raise Forbidden(f"{name!r} is the admin page's: an admin token is needed")
                if name == STATS_CHANNEL:
                    return name, STATS_RULE
                rule = self.namespaces.rule(name)
                private = is_private(name)
                if not private:
                    if len(known) >= _KNOWN_CHANNELS:
                        known.clear()
                    known[name] = rule
            if rule.users_in_name and session.user not in Namespaces.users_named(name):
                raise Forbidden(f"{name!r} is for the users its name lists")
            if private:
                if token is None or self.tokens is None:
                    raise Forbidden(f"{name!r} is private: subscribing needs a subscription token")
                self.tokens.subscription(token, session.user, name)
                return name, rule
            kind = rule.subscribe
            if kind == "authenticated" and session.user is None:
                raise Forbidden(f"subscribing to {name!r} needs a signed-in user")
            if kind == "token" and name not in session.grants:
                if token is None or self.tokens is None:
                    raise Forbidden(f"subscribing to {name!r} needs a token that grants it")
                self.tokens.subscription(token, session.user, name)
            if kind == "handler" and not self.subscribe_hooked:
                raise Forbidden(
                    f"subscription to {name!r} refused: the app decides, and has no rule"
                )
            return name, rule
        except (Forbidden, Unauthorized, LimitReached) as exc:
            self.refusals.refused(f"subscribe to {channel!r}", exc, None)
            raise

    async def subscribe_hooks(self, session: Session, channel: str) -> None:
        """The subscribe proxy, then the app's `on_subscribe` handler, after
        `check_subscribe`.

        Raises:
            Forbidden: the proxy or the handler refused (returned False, or raised
                Forbidden).
            Unauthorized: the proxy said so.
            BackendUnavailable: the proxy gave no usable answer.
        """
        try:
            proxy = self._subscribe_proxy
            if proxy is not None:
                await proxy.subscribe(
                    user=session.user,
                    channel=channel,
                    info=session.info,
                    headers=session.forwarded,
                )
            handler = self.subscribe_handler
            if handler is not None and await maybe_await(handler(session, channel)) is False:
                raise Forbidden(f"subscription to {channel!r} refused")
        except (Forbidden, Unauthorized, BackendUnavailable) as exc:
            self.refusals.refused(f"subscribe to {channel!r}", exc, None)
            raise

    async def authorize_subscribe(self, session: Session, channel: object) -> None:
        """`check_subscribe`, then `subscribe_hooks`."""
        name, _ = self.check_subscribe(session, channel)
        await self.subscribe_hooks(session, name)

    # -- publish ----------------------------------------------------------------------------

    def check_publish(self, session: Session | None, channel: str) -> Namespace:
        """The channel's rule when `session` (None: the server) may write it.

        Raises:
            Forbidden: the rule refuses, or the namespace is unknown.
        """
        try:
            return self._check_publish(session, channel)
        except Forbidden as exc:
            self.refusals.refused(f"publish to {channel!r}", exc, None)
            raise

    def _check_publish(self, session: Session | None, channel: str) -> Namespace:
        if channel == STATS_CHANNEL:
            raise Forbidden(f"only the server publishes to {channel!r}")
        rule = self.namespaces.rule(channel)
        if session is None:
            return rule
        if rule.users_in_name and session.user not in Namespaces.users_named(channel):
            raise Forbidden(f"{channel!r} is for the users its name lists")
        kind = rule.publish
        if kind == "nobody":
            raise Forbidden(f"only the server publishes to {channel!r}")
        if (kind == "members" or is_private(channel)) and channel not in session.channels:
            raise Forbidden(f"publishing to {channel!r} needs a subscription to it")
        if kind == "authenticated" and session.user is None:
            raise Forbidden(f"publishing to {channel!r} needs a signed-in user")
        return rule

    async def publish_hooks(self, session: Session, channel: str, data: Data) -> None:
        """The publish proxy, then the app's `on_publish` handler, after `check_publish`.

        Raises:
            Forbidden: the proxy or the handler refused (returned False, or raised
                Forbidden).
            Unauthorized: the proxy said so.
            BackendUnavailable: the proxy gave no usable answer.
        """
        try:
            proxy = self._publish_proxy
            if proxy is not None:
                await proxy.publish(user=session.user, channel=channel, data=data)
            handler = self.publish_handler
            if handler is not None and await maybe_await(handler(session, channel, data)) is False:
                raise Forbidden(f"publish to {channel!r} refused")
        except (Forbidden, Unauthorized, BackendUnavailable) as exc:
            self.refusals.refused(f"publish to {channel!r}", exc, None)
            raise


def _identity_of(result: object, proved: Identity) -> Identity:
    """What a connect handler returned, as an `Identity` (the token's grants and expiry
    carry over unless it returned an `Identity` of its own)."""
    if type(result) is not dict:  # (a dict, the usual answer, skips these and the ABC check)
        if result is None or isinstance(result, str):
            return new_identity(result, {}, proved.grants, proved.expires, proved.forwarded)
        if isinstance(result, Identity):
            return replace(result, forwarded=proved.forwarded)
        if not isinstance(result, Mapping):
            raise TypeError(
                f"connect handler must return str, None, a mapping or Identity, not {type(result)}"
            )
    answer: Mapping[str, Any] = result  # (a dict, or a mapping as checked above)
    user, info = answer.get("user"), answer.get("info", _NO_INFO)
    if info is _NO_INFO:
        info = {}  # (one of its own, as before: not a dict made for every answer)
    if user is not None and type(user) is not str and not isinstance(user, str):
        raise TypeError(f"connect handler's user must be str or None, not {type(user)}")
    if type(info) is not dict and not isinstance(info, Mapping):
        raise TypeError(f"connect handler's info must be a mapping, not {type(info)}")
    return new_identity(user, info, proved.grants, proved.expires, proved.forwarded)
