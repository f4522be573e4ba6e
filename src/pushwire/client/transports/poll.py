"""The client's polling transports: `longpoll` (each poll held until something is queued)
and `polling` (answered at once, asked again after `poll_interval`). A poll's cursor
acknowledges what the last one brought.

Every poll has a deadline: the time the server holds it (the welcome's `longpoll_timeout`;
0 for `polling`) plus `poll_margin`. A poll not answered by then (its connection frozen or
black-holed, a proxy that holds it) is abandoned and the connection counts as lost: the
client resumes the session, as after any drop. Nothing is lost (its channels are
subscribed again from the last offset it has, its hello names the last direct message it
has: what the abandoned poll may have carried comes again) and nothing arrives twice (the
client drops what it has by offset)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Final

from ..errors import ConnectionLost
from .base import Envelope, Item, encode_json
from .http import HttpTransport, refusal

__all__ = [
    "ASSUMED_LONGPOLL_TIMEOUT",
    "POLL_RETRIES",
    "POLL_RETRY_DELAY",
    "POLL_RETRY_DELAY_MAX",
    "PollTransport",
]

#: A poll answered 503 is asked again this many times, waiting POLL_RETRY_DELAY seconds,
#: doubled each time up to POLL_RETRY_DELAY_MAX, before the connection counts as lost.
POLL_RETRIES: Final = 6
POLL_RETRY_DELAY: Final = 0.1
POLL_RETRY_DELAY_MAX: Final = 2.0
#: The hold assumed of a long-poll when the welcome does not say (a server from before it
#: did): the server's default `longpoll_timeout`, seconds.
ASSUMED_LONGPOLL_TIMEOUT: Final = 25.0


class PollTransport(HttpTransport):
    """`longpoll` (held until something is queued) or `polling` (answered at once)."""

    def __init__(
        self,
        name: str,
        base: str,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        interval: float,
        send_timeout: float,
        poll_margin: float,
    ) -> None:
        super().__init__(base, host, port, ssl_context, send_timeout)
        self.name = name
        self.interval = interval
        self.cursor = 0
        #: Seconds the server holds a poll with nothing to send (the welcome says).
        self.hold = ASSUMED_LONGPOLL_TIMEOUT if name == "longpoll" else 0.0
        self.poll_margin = poll_margin

    def _learn(self, envelope: Envelope) -> None:
        super()._learn(envelope)
        hold = envelope.get("longpoll_timeout")
        if envelope.get("type") != "welcome" or self.name != "longpoll":
            return
        if isinstance(hold, int | float) and not isinstance(hold, bool) and hold >= 0:
            self.hold = float(hold)  # absent (an older server): ASSUMED_LONGPOLL_TIMEOUT

    async def _get(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        header: str = "",
        *,
        retry: bool = False,
        timeout: float | None = None,
    ) -> None:
        """One poll (or the POST opening the session), each request within `timeout`.
        `retry`: a 503 (the session's node did not answer in time, say) is asked again with
        the same cursor, after POLL_RETRY_DELAY doubling up to POLL_RETRY_DELAY_MAX, at most
        POLL_RETRIES times: the server keeps frames until a cursor acknowledges them, so
        nothing is lost."""
        for attempt in range(POLL_RETRIES + 1):
            status, headers, answer = await self.downstream.request(
                method, target, body, header, timeout=timeout
            )
            if status != 503 or "retry-after" in headers or not retry or attempt == POLL_RETRIES:
                break
            await asyncio.sleep(min(POLL_RETRY_DELAY * 2**attempt, POLL_RETRY_DELAY_MAX))
        if status != 200:
            # 410 unknown session, 409 not connected: the client resumes or starts anew;
            # 429, 503 with Retry-After: it backs off first (`refusal`).
            raise refusal(self.name, status, headers.get("retry-after"), answer)
        self.cursor = int(headers.get("pushwire-cursor", self.cursor))
        self.pending.extend(line for line in answer.split(b"\n") if line.strip())

    async def open(self, hello: Envelope, timeout: float) -> None:
        opening = self._get("POST", f"{self.base}/{self.name}", encode_json(hello))
        try:
            await asyncio.wait_for(opening, timeout)
        except (TimeoutError, OSError) as exc:
            raise ConnectionLost(1006, f"{self.name}: {exc}") from exc

    async def receive(self) -> Item:
        while not self.pending:
            if self.session is None:
                raise ConnectionLost(1006, "no session")
            target = f"{self.base}/{self.name}?cursor={self.cursor}"
            header = self._session_header()
            deadline = self.hold + self.poll_margin
            await self._get("GET", target, b"", header, retry=True, timeout=deadline)
            if not self.pending and self.name == "polling":
                await asyncio.sleep(self.interval)  # ajax polling asks again after an interval
        return self._next_pending()
