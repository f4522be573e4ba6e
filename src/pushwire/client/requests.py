"""Requests and their answers: each request gets an id, the answer (or `error`) with that id
settles it, and no answer within `request_timeout` fails it. A dropped or closed connection
fails every request still waiting (`disconnected`); a send that fails while the connection
stays up (an HTTP transport's upstream request refused or cut) fails it `unavailable`:
nothing else would send it again, so it is the caller's to retry."""

from __future__ import annotations

import asyncio
import logging

from .connection import Connection
from .errors import RequestFailed
from .transports.base import Envelope, Item

__all__ = ["Requests", "with_data"]

log = logging.getLogger("pushwire.client")

#: The envelopes that answer a request (with its id); `presence` answers one only with an id
#: (without, it is a snapshot after a subscription).
ANSWERS = frozenset({"subscribed", "unsubscribed", "published", "pong", "presence", "refreshed"})


def with_data(envelope: Envelope, data: str | bytes) -> Item:
    """`envelope` carrying `data`: text in its `data` field, binary beside it.

    Raises:
        TypeError: `data` is neither str nor bytes.
    """
    if isinstance(data, str):
        return {**envelope, "data": data}, None
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be str or bytes, not {type(data).__name__}")
    return envelope, bytes(data)


class Requests:
    """The requests sent on `connection` and not answered yet, by id."""

    def __init__(self, connection: Connection, timeout: float) -> None:
        self.timeout = timeout
        self._connection = connection
        self._pending: dict[int, asyncio.Future[Envelope]] = {}
        self._next_id = 0

    async def request(self, envelope: Envelope, data: str | bytes | None = None) -> Envelope:
        """Send `envelope` (with `data`, if any) once connected; its answer.

        Raises:
            RequestFailed: the server's `error`, or `timeout` / `disconnected`, or
                `unavailable` when the send failed while the connection stayed up.
            ClientClosed: the client is closed.
        """
        await self._connection.wait_ready(self.timeout)
        future = self._register(envelope)
        try:
            item = with_data(envelope, data) if data is not None else (envelope, None)
            try:
                await self._connection.send([item])
            except RequestFailed as failed:
                if not self._connection.ready:
                    raise
                # The connection is up, only this send failed (an HTTP transport's
                # `POST E/send` answered 503 or cut while its downstream lives): no
                # reconnection will send it again, so it must be retried as "not now".
                raise RequestFailed("unavailable", failed.message) from None
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise RequestFailed("timeout", f"no answer within {self.timeout} s") from None
        finally:
            self._pending.pop(envelope["id"], None)
            if future.done() and not future.cancelled():
                future.exception()  # failed by a drop after its send failed: seen here

    def answer(self, envelope: Envelope) -> None:
        """Settle the request `envelope` answers, if it is an answer or an `error`. An error
        no request waits for is logged."""
        kind = envelope["type"]
        if kind == "error":
            future = self._pending.pop(envelope.get("id", -1), None)
            error = RequestFailed(str(envelope.get("code")), str(envelope.get("message")))
            if future is not None and not future.done():
                future.set_exception(error)
            else:
                log.warning("server error: %s", error)
        elif kind in ANSWERS:
            future = self._pending.pop(envelope.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(envelope)

    def disconnected(self, message: str) -> None:
        """Fail every request waiting: the connection is gone."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(RequestFailed("disconnected", message))

    def _register(self, envelope: Envelope) -> asyncio.Future[Envelope]:
        self._next_id += 1
        envelope["id"] = self._next_id
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        return future
