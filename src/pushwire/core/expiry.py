"""Sessions whose connection token expired: their connection is closed with 4005.

A session opened with a token that has an `exp` lives until then (plus `jwt_leeway`) unless
its client refreshes the token (a `refresh` envelope, or a resumption with a new token): at
that time its connection gets an `error` envelope `token_expired` where the wire has one
(pushwire.v1), then close 4005, in the "reconnect" range: the client gets a new token and
resumes its session with it. A resumable session stays detached for `session_grace` as
after any drop; a raw connection, which cannot refresh, ends with its session.

The `exp` claim is wall-clock time, and the hub's timers run on its monotonic `Clock`: the
time left is converted once, when the token is taken (`exp + leeway - wall()`), and the
expiry is kept on the hub's clock from then on, where `ManualClock` moves it in tests.

One sweep for all sessions, not a timer each: sessions wait in buckets of `granularity`
seconds, and one timer is armed for the earliest bucket. A session costs an entry in its
bucket's dict (about 40 bytes) where a timer would cost about 660 bytes with uvloop
(~15% of an idle subscriber). A connection is closed at its expiry or up to `granularity`
later, never earlier.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Final

from ..clock import Clock, Timer
from ..errors import TokenExpired
from .sessions import Session

__all__ = ["SWEEP_INTERVAL", "TokenExpiry"]

#: Seconds per bucket: how late past its expiry a connection may be closed.
SWEEP_INTERVAL: Final = 1.0


class TokenExpiry:
    """Closes the connections of sessions whose token expired (see the module docstring).

    Args:
        clock: the hub's clock, where the sweep runs.
        wall: the wall clock a token's `exp` is read on (the token verifier's).
        leeway: seconds a session lives past its token's `exp` (`jwt_leeway`, the same
            leeway the verifier allows).
        granularity: seconds per bucket (`SWEEP_INTERVAL`).
    """

    __slots__ = (
        "_armed",
        "_buckets",
        "_clock",
        "_granularity",
        "_keys",
        "_timer",
        "leeway",
        "wall",
    )

    def __init__(
        self,
        clock: Clock,
        *,
        wall: Callable[[], float] = time.time,
        leeway: float = 5.0,
        granularity: float = SWEEP_INTERVAL,
    ) -> None:
        if granularity <= 0:
            raise ValueError(f"the sweep's granularity must be positive ({granularity} s)")
        self._clock = clock
        self.wall = wall
        self.leeway = leeway
        self._granularity = granularity
        # Bucket k holds the sessions due in ((k - 1) * granularity, k * granularity]; it is
        # swept at k * granularity. A bucket emptied by refreshes stays until then: its key
        # is in the heap once, however often sessions come and go.
        self._buckets: dict[int, dict[Session, None]] = {}
        self._keys: list[int] = []
        self._timer: Timer | None = None
        self._armed: int | None = None  # the bucket `_timer` sweeps

    @property
    def watched(self) -> int:
        """Sessions waiting for their token's expiry."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def watch(self, session: Session, expires: float | None) -> None:
        """`session`'s token expires at `expires` (seconds since the epoch, the `exp` claim;
        None: never): its connection is closed then, unless this is called again first (a
        refresh). Replaces what was watched for it before."""
        if session.token_due is not None:  # (a new session's is not: no call to `forget`)
            self.forget(session)
        session.token_expires = expires
        session.token_due = None
        if expires is None:
            return
        due = self._clock.time() + (expires + self.leeway - self.wall())
        session.token_due = due
        key = math.ceil(due / self._granularity)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            heapq.heappush(self._keys, key)
            if self._armed is None or key < self._armed:
                self._arm(key)
        bucket[session] = None

    def forget(self, session: Session) -> None:
        """Stop watching `session` (it ended, or its token changes). Its expiry is kept: a
        session whose token expired while it was detached still counts as expired."""
        due = session.token_due
        if due is None:
            return
        bucket = self._buckets.get(math.ceil(due / self._granularity))
        if bucket is not None:
            bucket.pop(session, None)

    def passed(self, session: Session) -> bool:
        """Whether `session`'s token has expired (on the hub's clock, leeway included)."""
        due = session.token_due
        return due is not None and self._clock.time() >= due

    def remaining(self, session: Session) -> float | None:
        """Seconds until `session`'s token expires (negative: it has); None: it never does."""
        due = session.token_due
        return None if due is None else due - self._clock.time()

    # -- the sweep ----------------------------------------------------------------------------

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = key
        self._timer = self._clock.call_at(key * self._granularity, self._sweep)

    def _sweep(self) -> None:
        armed = self._armed
        self._timer = self._armed = None
        # The bucket the timer was for is due, whatever the clock's resolution says.
        last = max(armed or 0, math.floor(self._clock.time() / self._granularity))
        keys, buckets = self._keys, self._buckets
        while keys and keys[0] <= last:
            bucket = buckets.pop(heapq.heappop(keys), None)
            if bucket:
                for session in bucket:  # popped first: closing may call `forget`
                    _expire(session)
        if keys:
            self._arm(keys[0])


def _expire(session: Session) -> None:
    """Close the connection of a session whose token expired: `error` first where the wire
    has envelopes (raw framings give b""), then 4005. A detached session has none to close:
    resuming it needs a new token."""
    transport = session.transport
    if session.closed or transport is None:
        return
    exc = TokenExpired("token expired")
    error = {"type": "error", "code": exc.error_code, "message": str(exc)}
    transport.write(transport.framing.frame_control(error))
    transport.close(exc.close_code, str(exc))
