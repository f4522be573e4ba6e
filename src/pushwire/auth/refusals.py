"""Refusals logged once each, at a rate a flood cannot turn into a log storm.

Every door reports what it refused here: which decision (connect, subscribe, publish, send,
the API key), the reason (the error's own message, which never holds a token or a session
secret) and the client's address. Up to `burst` lines go out at once, then one a second; the
rest are counted, and the count is logged when lines may go out again.
"""

from __future__ import annotations

import logging
from typing import Final

from ..clock import Clock
from ..errors import PushwireError

__all__ = ["RefusalLog"]

log = logging.getLogger("pushwire.auth")

#: Lines that may go out at once, and how many more a second after that.
BURST: Final = 20
PER_SECOND: Final = 1.0


class RefusalLog:
    """A token bucket in front of `log.warning` (see the module docstring)."""

    def __init__(self, clock: Clock, *, burst: int = BURST, per_second: float = PER_SECOND):
        self.clock = clock
        self.burst = burst
        self.per_second = per_second
        self._tokens = float(burst)
        self._last = 0.0
        self.suppressed = 0
        #: Refusals reported since start (logged or not), and by the error's class name
        #: (Unauthorized, Forbidden, ...: the reason's kind, for metrics).
        self.count = 0
        self.by_reason: dict[str, int] = {}

    def refused(self, decision: str, exc: PushwireError, remote: str | None) -> None:
        """`decision` (connect, subscribe, publish, ...) refused a client with `exc`."""
        self.count += 1
        reason = type(exc).__name__
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        now = self.clock.time()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1.0:
            self.suppressed += 1
            return
        self._tokens -= 1.0
        if self.suppressed:
            log.warning("%d more refusals were not logged (too many)", self.suppressed)
            self.suppressed = 0
        log.warning("refused %s from %s: %s", decision, remote or "?", str(exc)[:200])
