"""The last resort around a connection's callbacks: an exception nobody expected ends that
connection only, and is logged in one line, at a rate a flood cannot turn into a log storm.

Every door wraps what it does with a client's bytes (`data_received`, a request handler): an
exception that is not a `PushwireError` (those are answered as the protocol says) closes that
connection (HTTP 500, WebSocket 1011, a TCP `close` 1011) and is reported here. Up to `burst`
lines go out at once, then one a second; the rest are counted, and the count is logged when
lines may go out again. The traceback goes to the debug log, under the same bound.
"""

from __future__ import annotations

import logging
from typing import Final

from .clock import LOOP_CLOCK, Clock

__all__ = ["FAILURES", "FailureLog", "LogBucket"]

log = logging.getLogger("pushwire.guard")

#: Lines that may go out at once, and how many more a second after that.
BURST: Final = 20
PER_SECOND: Final = 1.0
#: Characters of an exception's message in its line.
SHOWN: Final = 200


class LogBucket:
    """A token bucket: `take()` is True when a line may go out now."""

    __slots__ = ("_last", "_tokens", "burst", "clock", "per_second")

    def __init__(self, clock: Clock, *, burst: int = BURST, per_second: float = PER_SECOND):
        self.clock = clock
        self.burst = burst
        self.per_second = per_second
        self._tokens = float(burst)
        self._last: float | None = None

    def take(self) -> bool:
        now = self.clock.time()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class FailureLog:
    """Where the guards report an unexpected exception (see the module docstring)."""

    def __init__(
        self, clock: Clock = LOOP_CLOCK, *, burst: int = BURST, per_second: float = PER_SECOND
    ) -> None:
        self.bucket = LogBucket(clock, burst=burst, per_second=per_second)
        self.suppressed = 0
        #: Failures reported since start (logged or not).
        self.count = 0

    def failed(self, where: str, exc: BaseException, remote: str | None) -> None:
        """`where` (`"http"`, `"websocket"`, `"tcp"`, a handler) failed with `exc` on the
        connection of `remote`; the caller closes that connection, or answers the request
        with 500 (an awaited answer that failed)."""
        self.count += 1
        if not self.bucket.take():
            self.suppressed += 1
            return
        if self.suppressed:
            log.error("%d more connection failures were not logged (too many)", self.suppressed)
            self.suppressed = 0
        text = str(exc)
        shown = text if len(text) <= SHOWN else text[:SHOWN] + "…"
        log.error(
            "%s connection from %s failed: %s: %s",
            where,
            remote or "?",
            type(exc).__name__,
            shown,
        )
        log.debug("the failure's traceback", exc_info=exc)


#: The process's failure log: every door reports here.
FAILURES: Final = FailureLog()
