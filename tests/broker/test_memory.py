"""The in-memory broker's idempotency keys: a repeat answers the first position and publishes
nothing, for `idempotency_ttl` seconds of its clock, at most `max_idempotency_keys` keys."""

from __future__ import annotations

from pushwire.broker.memory import MemoryBroker
from pushwire.clock import ManualClock
from pushwire.errors import PushwireError
from pushwire.message import Message


def broker_with(clock: ManualClock, **options: float) -> tuple[MemoryBroker, list[Message]]:
    broker = MemoryBroker(clock=clock, **options)  # type: ignore[arg-type]
    delivered: list[Message] = []
    broker.attach(delivered.append)
    return broker, delivered


def publish(broker: MemoryBroker, channel: str, data: str, key: str | None) -> Message:
    results: list[Message | PushwireError] = []
    broker.publish(channel, data, results.append, idempotency_key=key)
    [result] = results
    assert isinstance(result, Message)
    return result


def test_a_repeat_within_the_window_answers_the_first_position_and_delivers_nothing() -> None:
    clock = ManualClock()
    broker, delivered = broker_with(clock, idempotency_ttl=10)
    first = publish(broker, "pay", "once", "k")
    clock.advance(9.9)
    again = publish(broker, "pay", "once", "k")
    assert again.position == first.position
    assert [m.data for m in delivered] == ["once"]
    assert publish(broker, "other", "once", "k").offset == 1  # keys are per channel


def test_a_repeat_after_the_window_is_published_again() -> None:
    clock = ManualClock()
    broker, delivered = broker_with(clock, idempotency_ttl=10)
    first = publish(broker, "pay", "x", "k")
    clock.advance(10)
    assert publish(broker, "pay", "x", "k").offset == first.offset + 1
    assert len(delivered) == 2


def test_keys_beyond_the_bound_forget_the_oldest() -> None:
    clock = ManualClock()
    broker, _ = broker_with(clock, max_idempotency_keys=2)
    publish(broker, "pay", "1", "k1")
    publish(broker, "pay", "2", "k2")  # at the bound: both kept
    assert publish(broker, "pay", "2", "k2").offset == 2
    assert publish(broker, "pay", "1", "k1").offset == 1
    publish(broker, "pay", "3", "k3")  # over it: k1 is forgotten
    assert publish(broker, "pay", "1", "k1").offset == 4
