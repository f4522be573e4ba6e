"""Positions and history against a real redis-server: two brokers on one Redis play two
nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from pushwire.broker.base import HistoryBounds
from pushwire.message import Data, Position
from tests.redis_helpers import Node, publish_ok

pytestmark = pytest.mark.integration


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


async def test_channel_history_keeps_its_byte_bound_and_says_what_it_lost(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes(history_bytes=10)
    start = await a.broker.position("sized")
    await publish_ok(a.broker, "sized", "12345")
    await publish_ok(a.broker, "sized", "67890")  # 10 bytes: at the bound, both kept
    kept = await a.broker.history("sized", start)
    assert kept.complete and [m.data for m in kept.messages] == ["12345", "67890"]
    await publish_ok(a.broker, "sized", "x")  # 11 bytes: one over, the oldest goes
    trimmed = await a.broker.history("sized", start)
    assert [m.data for m in trimmed.messages] == ["67890", "x"]
    lost = trimmed.lost(start)
    assert not trimmed.complete and lost is not None and lost.offset == 1
    # Many small publishes then one over the bound: each cut where it should be.
    for index in range(50):
        await publish_ok(a.broker, "sized", f"{index % 10}")
    assert [m.data for m in (await a.broker.history("sized", start)).messages] == list("0123456789")
    await publish_ok(a.broker, "sized", "y" * 11)  # over the bound alone: delivered, not kept
    last = await a.broker.history("sized", start)
    assert last.messages == [] and last.position.offset == 54


async def test_a_namespace_byte_bound_wins_over_the_broker_s_in_redis(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes(history_bytes=1000)
    a.broker.set_history_policy(
        lambda channel: HistoryBounds(100, 60.0, 2) if channel == "tight" else None
    )
    start = await a.broker.position("tight")
    for data in ("a", "b", "c"):
        await publish_ok(a.broker, "tight", data)
    assert [m.data for m in (await a.broker.history("tight", start)).messages] == ["b", "c"]
