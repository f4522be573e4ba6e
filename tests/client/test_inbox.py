"""The inbox on its own: read to the end after the close, then the close, every time."""

from __future__ import annotations

import pytest

from pushwire.client import ClientClosed, Message
from pushwire.client.inbox import Inbox


@pytest.mark.parametrize("max_queue", [3, 2])  # room for the end marker, and none
async def test_a_closed_inbox_is_read_to_the_end_then_raises_every_time(max_queue: int) -> None:
    inbox = Inbox(max_queue)
    for text in ("a", "b"):
        await inbox.put(Message(text))
    inbox.close(ClientClosed(4004, "gone"))
    assert [await inbox.get(), await inbox.get()] == [Message("a"), Message("b")]
    for _ in range(2):
        with pytest.raises(ClientClosed, match="closed: 4004 gone"):
            await inbox.get()
