"""The publish queue against a real redis-server: two brokers on one Redis play two nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from pushwire.errors import PushwireError, Unavailable
from pushwire.message import Data, Message, Position
from tests.redis_helpers import WAIT, Node, evalsha_calls

pytestmark = pytest.mark.integration


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


async def publish_with_key(
    node: Node, channel: str, data: Data, key: str
) -> Message | PushwireError:
    future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
    node.broker.publish(channel, data, future.set_result, idempotency_key=key)
    async with asyncio.timeout(WAIT):
        return await future


async def test_a_publish_repeated_with_its_key_on_another_node_publishes_nothing(
    nodes: Callable[..., Any], redis: Any
) -> None:
    a: Node = await nodes()
    b: Node = await nodes()
    await a.broker.subscribe("pay")
    first = await publish_with_key(a, "pay", "once", "order-1")
    again = await publish_with_key(b, "pay", "once", "order-1")
    other = await publish_with_key(b, "pay", "twice", "order-2")
    assert isinstance(first, Message) and isinstance(again, Message)
    assert isinstance(other, Message)
    assert (again.epoch, again.offset) == (first.epoch, first.offset)
    assert other.offset == first.offset + 1
    await a.received_count(2)
    assert [m.data for m in a.received] == ["once", "twice"]
    # Kept by the script itself, for idempotency_ttl (300 s by default).
    ttl = await redis.pttl("pushwire:{pay}:idem:order-1")
    assert 299_000 < ttl <= 300_000


async def test_an_idempotency_key_past_its_ttl_publishes_again(
    nodes: Callable[..., Any], redis: Any
) -> None:
    a: Node = await nodes(idempotency_ttl=0.05)
    first = await publish_with_key(a, "pay", "x", "k")
    async with asyncio.timeout(WAIT):
        while await redis.exists("pushwire:{pay}:idem:k"):
            await asyncio.sleep(0.02)
    again = await publish_with_key(a, "pay", "x", "k")
    assert isinstance(first, Message) and isinstance(again, Message)
    assert again.offset == first.offset + 1


async def test_a_run_of_publishes_to_one_channel_is_one_script_call_with_each_its_own_answer(
    nodes: Callable[..., Any], redis: Redis
) -> None:
    a: Node = await nodes()
    await a.broker.subscribe("a")
    await a.broker.subscribe("b")
    before = await evalsha_calls(redis)
    plan: list[tuple[str, Data, str | None]] = [("a", f"a{i}", None) for i in range(20)]
    plan += [("b", f"b{i}", None) for i in range(5)]
    plan += [("a", "keyed", "k1"), ("a", "again", "k1"), ("a", b"\x00binary", None)]
    results: list[asyncio.Future[Message | PushwireError]] = []
    for channel, data, key in plan:  # no await in between: one batch of three runs
        future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
        a.broker.publish(channel, data, future.set_result, idempotency_key=key)
        results.append(future)
    async with asyncio.timeout(WAIT):
        answers = [await future for future in results]
    assert await evalsha_calls(redis) - before == 3  # a, b, a: one call per run

    assert all(isinstance(answer, Message) for answer in answers)
    messages = [answer for answer in answers if isinstance(answer, Message)]
    assert [(m.channel, m.offset) for m in messages] == [
        *(("a", offset) for offset in range(1, 21)),
        *(("b", offset) for offset in range(1, 6)),
        ("a", 21),
        ("a", 21),  # the key seen before: the first publish's position, nothing published
        ("a", 22),
    ]
    assert messages[-2].epoch == messages[0].epoch
    received = await a.received_count(27)
    assert [(m.channel, m.offset, m.data) for m in received] == [
        (m.channel, m.offset, m.data) for i, m in enumerate(messages) if i != 26
    ]
    history = await a.broker.history("a", Position(messages[0].epoch, 0))
    assert [(m.offset, m.data) for m in history.messages] == [
        (m.offset, m.data) for i, m in enumerate(messages) if m.channel == "a" and i != 26
    ]
