"""Which browser origins may talk to pushwire: one policy for every door (WebSocket
upgrades, the HTTP transports' CORS, the iframe's target, the Flash policy file).

Allowed: no Origin header (not a browser), the server's own origin (same host and port as the
request's Host), loopback origins on any port, and the configured origins ("*" allows all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from .errors import Forbidden

__all__ = ["LOOPBACK_HOSTS", "OriginPolicy"]

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which browser origins may open a connection (see the module docstring)."""

    allowed: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, origins: tuple[str, ...]) -> OriginPolicy:
        """The policy for configured origins as an operator writes them (any case, with or
        without a trailing slash)."""
        return cls(frozenset(origin.lower().rstrip("/") for origin in origins))

    def allows(self, origin: str | None, host: str | None, *, any_origin: bool = False) -> bool:
        if origin is None or any_origin or "*" in self.allowed:
            return True
        origin = origin.strip().lower().rstrip("/")
        if origin in self.allowed:
            return True
        if origin == "null":
            return False
        parts = urlsplit(origin)
        netloc = parts.netloc
        hostname = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
        if hostname in LOOPBACK_HOSTS:
            return True
        return host is not None and netloc == host.strip().lower()

    def cors_headers(
        self, origin: str | None, host: str | None, *, any_origin: bool = False
    ) -> list[tuple[str, str]]:
        """The CORS headers that let `origin` read an answer (none without an Origin header).

        Raises:
            Forbidden: the origin is not allowed.
        """
        if origin is None:
            return []
        if not self.allows(origin, host, any_origin=any_origin):
            raise Forbidden(f"origin {origin!r} is not allowed")
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "Pushwire-Cursor"),
            ("Vary", "Origin"),
        ]
