"""The inbox: messages and gaps received and not yet read by `recv()`, at most `max_queue`;
when it is full, putting waits, which holds the connection's reader back (backpressure:
nothing is dropped). It ends with the client's close."""

from __future__ import annotations

import asyncio
import contextlib

from .errors import ClientClosed, Failure, Gap, Message

__all__ = ["Inbox"]


class Inbox:
    """A bounded queue of `Message`, `Gap` and `Failure`, then the `ClientClosed` that ends
    it."""

    def __init__(self, max_queue: int) -> None:
        self._queue: asyncio.Queue[Message | Gap | Failure | ClientClosed]
        self._queue = asyncio.Queue(max_queue)
        self._closed: ClientClosed | None = None

    async def put(self, item: Message | Gap | Failure) -> None:
        """Add `item`; waits while the inbox is full."""
        await self._queue.put(item)

    async def get(self) -> Message | Gap | Failure:
        """The next item. Raises `ClientClosed` once closed and empty. Cancelling it loses
        nothing (the item stays for the next call)."""
        if self._closed is not None and self._queue.empty():
            raise self._closed
        item = await self._queue.get()
        if isinstance(item, ClientClosed):
            self._queue.put_nowait(item)  # every later call raises too
            raise item
        return item

    def close(self, closed: ClientClosed) -> None:
        """No more items: `get()` raises `closed` once the inbox is empty."""
        self._closed = closed
        # The end marker wakes a get() waiting on an empty inbox. A full inbox has no
        # waiter, and get() raises by itself once it has emptied it.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(closed)
