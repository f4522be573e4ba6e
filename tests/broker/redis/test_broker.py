"""RedisBroker as a whole against a real redis-server: start, close, and a Redis restart seen
by two brokers playing two nodes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from pushwire.broker.redis import RedisBroker
from pushwire.errors import InvalidState, PushwireError, Unavailable
from pushwire.message import Data, Message
from tests.redis_helpers import WAIT, Node, RedisServer, publish, publish_ok

pytestmark = pytest.mark.integration


async def publish_when_back(broker: RedisBroker, channel: str, data: Data) -> Message:
    """Publish until the broker's publishing connection is back (each sender reconnects on
    its own backoff schedule)."""
    deadline = time.monotonic() + WAIT
    while not isinstance(result := await publish(broker, channel, data), Message):
        assert time.monotonic() < deadline, f"publishing did not resume: {result}"
        await asyncio.sleep(0.05)  # polling for "redis is back", bounded by the deadline
    return result


async def test_a_redis_restart_fails_publishes_then_fan_out_resumes_with_a_new_epoch(
    nodes: Callable[..., Any], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pushwire.broker.redis")
    a: Node = await nodes()
    b: Node = await nodes()
    await a.broker.subscribe("room")
    await b.broker.subscribe("room")
    before = [await publish_ok(a.broker, "room", f"before{i}") for i in range(3)]
    await b.received_count(3)

    redis_server.stop()
    down = await publish(a.broker, "room", "while down")
    assert isinstance(down, Unavailable)
    assert isinstance(await publish(b.broker, "room", "while down"), Unavailable)
    with pytest.raises(Unavailable):
        await a.broker.position("room")
    started = time.monotonic()
    again = await publish(a.broker, "room", "still down")
    assert isinstance(again, Unavailable)  # fast: no round trip while down
    assert time.monotonic() - started < 0.5

    redis_server.start()
    # Both nodes resubscribe by themselves and say which channels may have missed messages.
    await a.until(lambda: a.resubscribed == [frozenset({"room"})])
    await b.until(lambda: b.resubscribed == [frozenset({"room"})])
    await publish_when_back(a.broker, "room", "probe")
    after_b = await publish_when_back(b.broker, "room", "after")

    await a.until(lambda: any(m.data == "after" for m in a.received))
    await b.until(lambda: any(m.data == "after" for m in b.received))
    on_a, on_b = a.received, b.received
    assert on_a[:3] == before
    assert on_a == on_b
    assert on_a[-1] == after_b
    new_epoch = after_b.epoch
    assert new_epoch != before[0].epoch
    assert all(m.epoch == new_epoch for m in on_a[3:])
    assert [m.offset for m in on_a[3:]] == list(range(1, len(on_a) - 2))

    assert await a.broker.position("room") == after_b.position
    history = await b.broker.history("room", before[-1].position)
    assert not history.complete
    assert history.messages == on_a[3:]

    lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
    restored = [r for r in caplog.records if "connection restored" in r.getMessage()]
    assert len(lost) == 2  # once per node, not once per failed publish
    assert len(restored) == 2


async def test_start_without_redis_raises_unavailable(redis_server: RedisServer) -> None:
    port = redis_server.port
    redis_server.stop()
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    with pytest.raises(Unavailable, match=f"redis at 127.0.0.1:{port} unreachable"):
        await broker.start()
    await broker.close()


async def test_close_stops_every_task_and_later_publishes_are_refused(
    nodes: Callable[..., Any],
) -> None:
    before = asyncio.all_tasks()
    node: Node = await nodes()
    await node.broker.subscribe("room")
    queued: list[Message | PushwireError] = []
    for i in range(5):
        node.broker.publish("room", str(i), queued.append)
    await node.broker.close()
    assert asyncio.all_tasks() == before
    assert len(queued) == 5
    assert all(isinstance(r, Message) for r in queued)  # close sends what was queued

    after: list[Message | PushwireError] = []
    node.broker.publish("room", "late", after.append)
    assert len(after) == 1
    assert isinstance(after[0], InvalidState)
    assert str(after[0]) == "redis broker is closed"
