"""Who may watch the admin page's figures: admin tokens and the stats channel.

The admin page (`/admin`, `Config.admin`) gets its live figures over pushwire itself: it
subscribes to `STATS_CHANNEL`, which the server publishes to about once a second. Only an
**admin session** may subscribe to it, on any door; nobody may publish to it or read its
history or presence through the HTTP API. A session is an admin session when its connection
token is

- an **admin token**, which `POST /admin/session` hands out to a caller showing the API key:
  `pwadmin.<exp>.<nonce>.<signature>`, an HMAC-SHA256 signature under a key derived from the
  API key (so every worker of a server, and every node sharing the key, accepts it), valid
  for `admin_token_ttl` seconds; or
- an **admin JWT**: a connection token signed with the server's JWT keys whose claims say
  `"admin": true`.

Either gives the session the stats channel as a grant; a `channels` claim (or the connect
proxy's `channels`) naming the stats channel grants nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

from ..config import Config
from ..errors import TokenExpired, Unauthorized
from .namespaces import Namespace

__all__ = ["ADMIN_PREFIX", "STATS_CHANNEL", "STATS_RULE", "AdminTokens", "admin_grants"]

#: The internal channel the server publishes the admin page's figures to.
STATS_CHANNEL: Final = "$pushwire:stats"
#: Its rule: nobody publishes (the server alone, not even through the API), no presence.
STATS_RULE: Final = Namespace("pushwire", subscribe="token", publish="nobody", presence=False)
#: What every admin token starts with.
ADMIN_PREFIX: Final = "pwadmin."
_TOKEN: Final = re.compile(r"pwadmin\.([0-9]{1,12})\.([A-Za-z0-9_-]{16,32})\.([A-Za-z0-9_-]{43})")


def admin_grants(channels: frozenset[str], admin: bool) -> frozenset[str]:
    """The grants of a connection: `channels` without the stats channel, plus the stats
    channel when the credential is an admin's."""
    if admin:
        return channels | {STATS_CHANNEL}
    return channels - {STATS_CHANNEL} if STATS_CHANNEL in channels else channels


class AdminTokens:
    """Makes and checks admin tokens (see the module docstring).

    Args:
        api_key: the server's API key; the signing key is derived from it.
        ttl: seconds an admin token is valid.
        wall: the wall clock (seconds since the epoch).
    """

    def __init__(self, api_key: str, ttl: float, *, wall: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(api_key.encode(), b"pushwire admin token v1", hashlib.sha256).digest()
        self._ttl = ttl
        self._wall = wall

    @classmethod
    def from_config(cls, config: Config) -> AdminTokens | None:
        """The admin tokens of a server with the admin page on and an API key, else None."""
        key = config.api_key
        return cls(key, config.admin_token_ttl) if config.admin and key else None

    def expires(self, token: str | None) -> float | None:
        """When `token` expires if it is an admin token (valid: `check`), None if it is not
        one (it starts otherwise: a JWT, or nothing)."""
        if token is None or not token.startswith(ADMIN_PREFIX):
            return None
        return self.check(token)

    def issue(self) -> tuple[str, float]:
        """A new admin token and when it expires (seconds since the epoch)."""
        expires = int(self._wall() + self._ttl)
        body = f"{ADMIN_PREFIX}{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}", float(expires)

    def check(self, token: str) -> float:
        """When the valid admin token `token` expires.

        Raises:
            Unauthorized: not an admin token, or not signed with this server's key.
            TokenExpired: it was, and its time has passed.
        """
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise Unauthorized("invalid admin token")
        body = token[: match.start(3) - 1]
        if not hmac.compare_digest(self._sign(body), match.group(3)):
            raise Unauthorized("invalid admin token")
        expires = float(match.group(1))
        if expires <= self._wall():
            raise TokenExpired("the admin token has expired")
        return expires

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
