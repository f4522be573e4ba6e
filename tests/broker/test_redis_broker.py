"""RedisBroker against a real redis-server: two brokers on one Redis play two nodes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from pushwire.broker.redis import RedisBroker
from pushwire.errors import InvalidState, PushwireError, Unavailable
from pushwire.message import Data, Message, Position

from .conftest import WAIT, Maker, RedisBrokers, RedisServer, Watched, numsub

pytestmark = pytest.mark.integration


class Node(Watched):
    """One process's broker and what it delivered (attached before the broker starts)."""

    def __init__(self, broker: RedisBroker) -> None:
        super().__init__()
        self.broker = broker
        self.broker.on_resubscribed = self._resubscribed
        self.broker.attach(self._deliver)
        self.received: list[Message] = []
        self.resubscribed: list[frozenset[str]] = []

    def _deliver(self, message: Message) -> None:
        self.received.append(message)
        self.changed()

    def _resubscribed(self, channels: frozenset[str]) -> None:
        self.resubscribed.append(channels)
        self.changed()

    async def received_count(self, count: int) -> list[Message]:
        await self.until(lambda: len(self.received) >= count)
        return self.received


async def publish(broker: RedisBroker, channel: str, data: Data) -> Message | PushwireError:
    """What `done` was called with, awaited with a bound."""
    future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
    broker.publish(channel, data, future.set_result)
    async with asyncio.timeout(WAIT):
        return await future


async def publish_ok(broker: RedisBroker, channel: str, data: Data) -> Message:
    result = await publish(broker, channel, data)
    assert isinstance(result, Message), result
    return result


async def publish_when_back(broker: RedisBroker, channel: str, data: Data) -> Message:
    """Publish until the broker's publishing connection is back (each sender reconnects on
    its own backoff schedule)."""
    deadline = time.monotonic() + WAIT
    while not isinstance(result := await publish(broker, channel, data), Message):
        assert time.monotonic() < deadline, f"publishing did not resume: {result}"
        await asyncio.sleep(0.05)  # polling for "redis is back", bounded by the deadline
    return result


@pytest.fixture
def nodes(redis_brokers: RedisBrokers) -> Maker[Node]:
    """Make started nodes on `redis_server`; all are closed at the end."""
    return redis_brokers.maker(Node, timeout=2.0)


async def test_a_message_published_on_either_node_reaches_both_once_at_the_same_position(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    await a.broker.subscribe("room")
    await b.broker.subscribe("room")

    done: list[Message] = []
    results: list[asyncio.Future[Message | PushwireError]] = []
    for i in range(100):
        for name, node in (("a", a), ("b", b)):
            future: asyncio.Future[Message | PushwireError] = (
                asyncio.get_running_loop().create_future()
            )
            data: Data = f"{name}{i}" if i % 2 else f"{name}{i}".encode()
            node.broker.publish("room", data, future.set_result)
            results.append(future)
    async with asyncio.timeout(WAIT):
        for future in results:
            result = await future
            assert isinstance(result, Message)
            done.append(result)

    on_a = await a.received_count(200)
    on_b = await b.received_count(200)
    assert on_a == on_b
    assert len(on_a) == 200  # exactly once
    assert [m.offset for m in on_a] == list(range(1, 201))  # dense, in order
    assert len({m.epoch for m in on_a}) == 1
    assert sorted(done, key=lambda m: m.offset) == on_a  # `done` saw the same positions
    for name in ("a", "b"):
        # each publisher's messages in its call order, text as text, binary as binary
        mine = [m.data for m in on_a if (m.data[:1] in (name, name.encode()))]
        assert mine == [f"{name}{i}" if i % 2 else f"{name}{i}".encode() for i in range(100)]


async def test_text_stays_text_and_binary_stays_binary_live_and_in_history(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    await b.broker.subscribe("kinds")
    values: list[Data] = ["", b"", "héllo wörld ✓\n", b"\x00 \xff\n two words", " lead", b" "]
    start = await a.broker.position("kinds")
    for value in values:
        await publish_ok(a.broker, "kinds", value)
    received = await b.received_count(len(values))
    assert [m.data for m in received] == values
    assert [type(m.data) for m in received] == [type(v) for v in values]
    history = await b.broker.history("kinds", start)
    assert [m.data for m in history.messages] == values
    assert [type(m.data) for m in history.messages] == [type(v) for v in values]


async def test_position_is_offset_zero_before_any_message_and_the_same_on_every_node(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    first = await a.broker.position("fresh")
    assert first.offset == 0
    assert await b.broker.position("fresh") == first
    message = await publish_ok(b.broker, "fresh", "one")
    assert message.position == Position(first.epoch, 1)
    assert await a.broker.position("fresh") == message.position


async def test_history_after_a_position_returns_exactly_the_missed_messages_in_order(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    sent = [await publish_ok(a.broker, "log", f"m{i}") for i in range(1, 11)]
    seen = sent[3].position  # a client saw up to offset 4

    history = await b.broker.history("log", seen)
    assert history.complete
    assert history.messages == sent[4:]
    assert history.position == sent[-1].position

    caught_up = await b.broker.history("log", sent[-1].position)
    assert caught_up.complete
    assert caught_up.messages == []


async def test_history_reaching_back_history_size_messages_is_complete(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes(history_size=5)
    sent = [await publish_ok(a.broker, "short", f"m{i}") for i in range(1, 21)]
    history = await a.broker.history("short", sent[14].position)  # 5 missed: just under
    assert history.complete
    assert history.messages == sent[15:]


async def test_history_trimmed_past_the_position_is_incomplete(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes(history_size=5)
    sent = [await publish_ok(a.broker, "short", f"m{i}") for i in range(1, 21)]
    history = await a.broker.history("short", sent[13].position)  # 6 missed: just over
    assert not history.complete
    assert history.messages == sent[15:]  # the 5 kept; 15 is lost
    assert history.position == sent[-1].position


async def test_history_older_than_history_ttl_is_trimmed(nodes: Callable[..., Any]) -> None:
    a: Node = await nodes(history_ttl=0.3)
    first = await publish_ok(a.broker, "aging", "old")
    await asyncio.sleep(0.5)  # time passing is the subject of this test
    second = await publish_ok(a.broker, "aging", "new")
    assert second.position == Position(first.epoch, 2)
    history = await a.broker.history("aging", Position(first.epoch, 0))
    assert not history.complete
    assert history.messages == [second]


async def test_history_from_another_epoch_is_incomplete(nodes: Callable[..., Any]) -> None:
    a: Node = await nodes()
    sent = [await publish_ok(a.broker, "epochs", f"m{i}") for i in range(3)]
    history = await a.broker.history("epochs", Position("not-this-one", 1))
    assert not history.complete
    assert history.messages == sent


async def test_lost_redis_data_gives_the_channel_a_new_epoch(
    nodes: Callable[..., Any], redis: Redis
) -> None:
    a: Node = await nodes()
    old = await publish_ok(a.broker, "flushed", "before")
    await redis.flushall()
    position = await a.broker.position("flushed")
    assert position.epoch != old.epoch
    assert position.offset == 0
    history = await a.broker.history("flushed", old.position)
    assert not history.complete
    new = await publish_ok(a.broker, "flushed", "after")
    assert new.position == Position(position.epoch, 1)


async def test_one_redis_subscription_per_channel_per_process(
    nodes: Callable[..., Any], redis: Redis
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    for _ in range(3):
        await a.broker.subscribe("busy")
    await b.broker.subscribe("busy")
    assert await numsub(redis, "pushwire:{busy}") == 2
    await a.broker.unsubscribe("busy")
    assert await numsub(redis, "pushwire:{busy}") == 1

    await publish_ok(b.broker, "busy", "after a left")
    await b.received_count(1)
    assert a.received == []


async def test_a_channel_is_not_delivered_after_unsubscribe(nodes: Callable[..., Any]) -> None:
    a: Node = await nodes()
    await a.broker.subscribe("gone")
    await a.broker.subscribe("stays")
    await a.broker.unsubscribe("gone")
    await publish_ok(a.broker, "gone", "no")
    await publish_ok(a.broker, "stays", "yes")
    received = await a.received_count(1)
    assert [(m.channel, m.data) for m in received] == [("stays", "yes")]


async def test_publishes_up_to_max_pending_are_queued_and_one_more_is_refused(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes(max_pending=10)
    results: list[Message | PushwireError] = []
    all_done = asyncio.Event()

    def done(result: Message | PushwireError) -> None:
        results.append(result)
        if len(results) == 11:
            all_done.set()

    for i in range(11):  # no await in between: the sender cannot take any yet
        a.broker.publish("queue", str(i), done)
    assert len(results) == 1
    refused = results[0]
    assert isinstance(refused, Unavailable)
    assert str(refused) == "publish queue full (10 pending)"
    async with asyncio.timeout(WAIT):
        await all_done.wait()
    assert all(isinstance(r, Message) for r in results[1:])
    assert [r.data for r in results[1:] if isinstance(r, Message)] == [str(i) for i in range(10)]


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


async def test_a_killed_subscription_connection_is_resubscribed_and_reported(
    nodes: Callable[..., Any], redis: Redis
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    await b.broker.subscribe("room")
    await b.broker.subscribe("lobby")
    await redis.client_kill_filter(_type="pubsub")
    await b.until(lambda: b.resubscribed == [frozenset({"room", "lobby"})])
    assert await numsub(redis, "pushwire:{room}") == 1
    message = await publish_ok(a.broker, "room", "after the kill")
    assert await b.received_count(1) == [message]


async def test_large_messages_are_sent_in_several_batches_in_order(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes(max_batch=4, max_batch_bytes=100_000)
    await a.broker.subscribe("bulk")
    payloads = [bytes([i]) * 60_000 for i in range(10)] + [f"small{i}" for i in range(20)]
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Message | PushwireError]] = []
    for data in payloads:
        futures.append(loop.create_future())
        a.broker.publish("bulk", data, futures[-1].set_result)
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*futures)
    assert [r.data for r in results if isinstance(r, Message)] == payloads
    received = await a.received_count(len(payloads))
    assert received == results


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
