"""Retrying what failed for a reason that passes: the policy (how many attempts, how long
between them) and the loop that applies it.

Retried are the failures that say "not now" and nothing else: the server's `unavailable`
(its broker is down, or a node did not answer in time), and the client's own `timeout` and
`disconnected` where doing it twice does no harm (a subscription; a publish, which carries
an idempotency key so that the server publishes it once). Anything else (`forbidden`,
`bad_request`, `too_large`, ...) would fail again: it is given up at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final, TypeVar

from .errors import Failure, RequestFailed

__all__ = [
    "LIMITED_BACKOFF",
    "MAX_SERVER_BACKOFF",
    "RETRYABLE",
    "RetryPolicy",
    "parse_retry_after",
    "retrying",
]

T = TypeVar("T")

#: The codes of a `RequestFailed` that a retry may cure.
RETRYABLE: Final = frozenset({"unavailable", "timeout", "disconnected"})
#: The longest the server's word (`Retry-After`, close 4029) makes the client wait, seconds:
#: a server that asks for more (or a hostile one) does not park its clients for hours.
MAX_SERVER_BACKOFF: Final = 60.0
#: What a close 4029 that says no time makes the client wait at least (docs/protocol.md:
#: "reconnect after a backoff (at least a second)").
LIMITED_BACKOFF: Final = 1.0
#: Digits of a `Retry-After` read at most (more is not a wait anyone means).
_MAX_DIGITS: Final = 10


def parse_retry_after(value: object) -> float | None:
    """The seconds an HTTP `Retry-After` (or an `error`'s `retry_after`) asks for, at most
    `MAX_SERVER_BACKOFF`; None when absent or not a delay: the header's delta-seconds form
    only (RFC 9110 10.2.3: ASCII digits; an HTTP-date, a sign, a fraction, a Unicode digit
    or anything else is ignored), or a non-negative finite JSON number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not 0 <= value < float("inf"):
            return None
        return min(float(value), MAX_SERVER_BACKOFF)
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if not 0 < len(text) <= _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return min(float(int(text)), MAX_SERVER_BACKOFF)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how patiently, the client retries a request that failed for a
    retryable reason (`RETRYABLE`) before it gives up and tells the app.

    Attempt n+1 waits uniform(0, min(`delay_max`, `delay` * 2**(n-1))) seconds after attempt
    n failed (exponential backoff, full jitter: clients that failed together do not come
    back together). `attempts` counts the first one: 1 means no retry. The defaults give up
    after about half a minute of backoff (plus `request_timeout` for each attempt that timed
    out), well within the server's `idempotency_ttl` (300 s), as a publish's retries must be.
    """

    attempts: int = 8
    delay: float = 0.5
    delay_max: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {self.attempts}")
        if not 0 < self.delay <= self.delay_max:
            raise ValueError(f"need 0 < delay <= delay_max, not {self.delay}, {self.delay_max}")

    def backoff(self, failed: int) -> float:
        """Seconds to wait after the `failed`-th attempt failed (1 for the first)."""
        return random.uniform(0, min(self.delay_max, self.delay * 2 ** (failed - 1)))


async def retrying(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    give_up: Callable[[Failure], None],
    operation: str,
    channel: str | None = None,
    retryable: Collection[str] = RETRYABLE,
) -> T:
    """`await call()` until it succeeds, retrying a `RequestFailed` whose code is in
    `retryable` as `policy` says.

    Raises:
        RequestFailed: the last failure, once given up: at once for a code not in
            `retryable`; after `policy.attempts` attempts for one in it, and then
            `give_up` was called first with the `Failure` (what the app is told).
        ClientClosed: the client closed meanwhile.
    """
    failed = 0
    while True:
        try:
            return await call()
        except RequestFailed as exc:
            if exc.code not in retryable:
                raise
            failed += 1
            if failed >= policy.attempts:
                give_up(Failure(operation, exc.code, exc.message, channel, failed))
                raise RequestFailed(
                    exc.code, f"{exc.message} (gave up after {failed} attempts)"
                ) from exc
        await asyncio.sleep(policy.backoff(failed))
