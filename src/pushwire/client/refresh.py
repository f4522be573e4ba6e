"""A token refreshed before it expires, without reconnecting.

When the server's `welcome` (or its last `refreshed`) says when the token expires, the client
waits about 80% of the time left (and refreshes at least 1 s before the end), asks the app
for a new token (`token_refresh`), and sends it in a `refresh` envelope; the server's
`refreshed` says when the new one expires, and the next refresh is planned from it. A refresh
that fails (the app's callback, the server's refusal, a drop) is not retried here: the
server closes the connection at the expiry (4005), and the connection loop comes back with
a new token from the app (connection.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from .connection import Connection
from .errors import ClientClosed, RequestFailed
from .requests import Requests

__all__ = ["MIN_MARGIN", "SHARE", "TokenRefresh", "refresh_delay"]

log = logging.getLogger("pushwire.client")

#: The share of a token's remaining time the client waits before refreshing it.
SHARE: Final = 0.8
#: The least time, seconds, a refresh is sent before the token expires.
MIN_MARGIN: Final = 1.0


def refresh_delay(expires: float, now: float) -> float:
    """Seconds to wait before refreshing a token that expires at `expires` (both seconds
    since the epoch): `SHARE` of the time left, and at least `MIN_MARGIN` before the end."""
    remaining = expires - now
    return max(0.0, min(SHARE * remaining, remaining - MIN_MARGIN))


class TokenRefresh:
    """Refreshes `connection`'s token before it expires, through `requests`.

    Args:
        wall: the wall clock an expiry is read on.
    """

    def __init__(
        self,
        connection: Connection,
        requests: Requests,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._connection = connection
        self._requests = requests
        self._wall = wall
        self._task: asyncio.Task[None] | None = None

    def plan(self) -> None:
        """Plan the next refresh from the connection's `expires` (after each welcome), in
        place of any planned before. Nothing without `token_refresh` or an expiry."""
        self.cancel()
        expires = self._connection.expires
        if expires is not None and self._connection.token_refresh is not None:
            self._task = asyncio.ensure_future(self._refresh_at(expires))

    def cancel(self) -> None:
        """No refresh planned (the client closes, or a welcome plans anew)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _refresh_at(self, expires: float) -> None:
        await asyncio.sleep(refresh_delay(expires, self._wall()))
        fetch = self._connection.token_refresh
        assert fetch is not None
        try:
            token = await asyncio.wait_for(fetch(), self._requests.timeout)
            if not isinstance(token, str):
                raise TypeError(f"token_refresh gave {type(token).__name__}, not str")
            self._connection.token = token  # the next hello shows it too
            answer = await self._requests.request({"type": "refresh", "token": token})
        except ClientClosed:
            return
        except RequestFailed as failed:
            log.warning("token refresh refused: %s", failed)
            return
        except Exception as exc:  # the app's callback: any failure means no new token
            log.warning("token_refresh failed: %r", exc)
            return
        new = answer.get("expires")
        self._connection.expires = float(new) if isinstance(new, int | float) else None
        self._task = None  # this task ends here: planning again must not cancel it
        self.plan()
