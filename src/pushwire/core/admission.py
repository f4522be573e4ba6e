"""Who may open a session now: handshakes a second per address, and sessions open at once
in total (`max_sessions`), per address (`max_sessions_per_ip`) and per user
(`max_sessions_per_user`).

The doors ask `handshake` and `admit` before they make anything for a new client (an HTTP
door answers 429 or 503 with `Retry-After`); the endpoint asks again when it opens the
session (the TCP port has no door of its own; between the two a connect handler may have
awaited). `opened` and `closed` keep the counts, called by `SessionLifecycle`.
"""

from __future__ import annotations

from ..clock import Clock, time_reader
from ..config import Config
from ..errors import RateLimited, TooManySessions
from ..ratelimit import AddressBuckets, Networks, RatePolicy, address_key, is_loopback
from .sessions import Session

__all__ = ["Admission"]


class Admission:
    """The per-address and per-user bounds of new sessions, and their counts."""

    __slots__ = (
        "_clock",
        "_config",
        "_exempt",
        "_handshakes",
        "_loopback_exempt",
        "_prefix",
        "_rates",
        "per_address",
        "per_user",
        "total",
    )

    def __init__(self, config: Config, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._exempt = Networks(config.limit_exempt)
        self._loopback_exempt = config.per_ip_exempt_loopback
        # Counters are kept per client: an IPv6 address by its /64 (`address_key`).
        self._prefix = config.per_ip_ipv6_prefix
        rate = config.handshakes_per_ip
        self._handshakes = (
            AddressBuckets(rate, max(1, config.handshake_burst)) if rate > 0 else None
        )
        self._rates: RatePolicy | None = None
        #: Sessions open now: in all, per address (when bounded), per user (when bounded).
        self.total = 0
        self.per_address: dict[str, int] = {}
        self.per_user: dict[str, int] = {}

    def exempt(self, address: str | None) -> bool:
        """Whether `address` is exempt from per-address limits and session rates: on the
        `limit_exempt` list, or loopback with `per_ip_exempt_loopback`. (None: unknown,
        not exempt.)"""
        if address is None:
            return False
        if address in self._exempt:
            return True
        return self._loopback_exempt and is_loopback(address)

    def rates(self) -> RatePolicy:
        """The sessions' message and byte rates: one policy every session's `MessageRate`
        shares, reading the running loop's time (a new one in another loop)."""
        time = time_reader(self._clock)
        policy = self._rates
        if policy is None or policy.time != time:
            policy = self._rates = RatePolicy(self._config, time)
        return policy

    def handshake(self, address: str | None) -> None:
        """One handshake from `address`.

        Raises:
            RateLimited: over `handshakes_per_ip` (its `retry_after` says when to come back).
        """
        buckets = self._handshakes
        if buckets is None or address is None or self.exempt(address):
            return
        wait = buckets.take(address_key(address, self._prefix), self._clock.time())
        if wait > 0:
            rate = self._config.handshakes_per_ip
            raise RateLimited(
                f"too many handshakes from one address (> {rate:g}/s)", retry_after=wait
            )

    def admit(self, address: str | None) -> None:
        """Whether a new session from `address` may open now.

        Raises:
            TooManySessions: `max_sessions` or `max_sessions_per_ip` are reached.
        """
        config = self._config
        if self.total >= config.max_sessions > 0:
            raise TooManySessions(f"too many sessions (>= {config.max_sessions})")
        limit = config.max_sessions_per_ip
        if (
            limit > 0
            and address is not None
            and self.per_address.get(address_key(address, self._prefix), 0) >= limit
            and not self.exempt(address)
        ):
            raise TooManySessions(f"too many sessions from one address (>= {limit})")

    def admit_user(self, user: str | None, address: str | None = None) -> None:
        """Whether `user` may open one more session (no bound on no user).

        Raises:
            TooManySessions: `max_sessions_per_user` is reached.
        """
        limit = self._config.max_sessions_per_user
        if (
            limit > 0
            and user is not None
            and self.per_user.get(user, 0) >= limit
            and not self.exempt(address)
        ):
            raise TooManySessions(f"too many sessions of one user (>= {limit})")

    def opened(self, session: Session) -> None:
        """`session` opened: it counts until `closed`."""
        self.total += 1
        address, user = session.address, session.user
        if address is not None and self._config.max_sessions_per_ip > 0:
            key = address_key(address, self._prefix)
            self.per_address[key] = self.per_address.get(key, 0) + 1
        if user is not None and self._config.max_sessions_per_user > 0:
            self.per_user[user] = self.per_user.get(user, 0) + 1

    def closed(self, session: Session) -> None:
        """`session` ended (or left for another process)."""
        self.total -= 1
        address, user = session.address, session.user
        if address is not None and self._config.max_sessions_per_ip > 0:
            _decrement(self.per_address, address_key(address, self._prefix))
        if user is not None and self._config.max_sessions_per_user > 0:
            _decrement(self.per_user, user)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
