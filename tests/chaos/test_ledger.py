"""The ledger's rules on hand-made records: what holds, and each way a record can break
them (so that a chaos run that passes means what docs/delivery.md says)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.chaos.ledger import (
    Counts,
    Got,
    Hole,
    PublishLog,
    Record,
    Stopped,
    check,
    recovery_times,
)


def published(*entries: tuple[str, str, int]) -> PublishLog:
    """A log of `(id, epoch, offset)`, published one per second in that order."""
    log = PublishLog()
    for at, (message_id, epoch, offset) in enumerate(entries):
        log.sent(message_id, float(at))
        log.placed(message_id, (epoch, offset), float(at))
    return log


def got(message_id: str, epoch: str, offset: int, at: float = 0.0) -> Got:
    return Got(at, epoch, offset, message_id)


def rec(start: tuple[str, int], items: Sequence[Got | Hole]) -> Record:
    return Record("s", start, list(items))


def checked(log: PublishLog, record: Record) -> Counts:
    log.learn([record])
    return check(record, log)


LOG = [("m1", "a", 1), ("m2", "a", 2), ("m3", "a", 3), ("m4", "a", 4)]


def test_everything_once_in_order_holds() -> None:
    record = rec(("a", 0), [got(m, e, o) for m, e, o in LOG])
    counts = checked(published(*LOG), record)
    assert counts.holds, counts.violations
    assert (counts.sent, counts.received, counts.lost_silently) == (4, 4, 0)


def test_messages_before_the_subscription_are_not_owed() -> None:
    record = rec(("a", 2), [got("m3", "a", 3), got("m4", "a", 4)])
    counts = checked(published(*LOG), record)
    assert counts.holds, counts.violations
    assert counts.sent == 2


def test_a_missing_message_is_lost_silently() -> None:
    record = rec(("a", 0), [got("m1", "a", 1), got("m3", "a", 3), got("m4", "a", 4)])
    counts = checked(published(*LOG), record)
    assert counts.lost_silently == 1
    assert counts.violations == ["s: lost silently a:2=m2"]


def test_a_missing_tail_is_lost_silently() -> None:
    record = rec(("a", 0), [got("m1", "a", 1)])
    counts = checked(published(*LOG), record)
    assert counts.lost_silently == 3


def test_a_duplicate_is_counted() -> None:
    items = [*(got(m, e, o) for m, e, o in LOG), got("m2", "a", 5)]
    counts = checked(published(*LOG), rec(("a", 0), items))
    assert counts.duplicated == 1
    assert not counts.holds


def test_out_of_order_is_a_violation() -> None:
    items = [got("m2", "a", 2), got("m1", "a", 1), got("m3", "a", 3), got("m4", "a", 4)]
    counts = checked(published(*LOG), rec(("a", 0), items))
    assert any("after a:2" in v for v in counts.violations)


def test_a_message_at_another_position_than_published_is_a_violation() -> None:
    items = [got("m2", "a", 1), got("m1", "a", 2), got("m3", "a", 3), got("m4", "a", 4)]
    counts = checked(published(*LOG), rec(("a", 0), items))
    assert "s: m2 at a:1, published as m1" in counts.violations


def test_a_reported_gap_with_the_exact_range_holds() -> None:
    items: list[Got | Hole] = [got("m1", "a", 1), Hole(0.0, ("a", 1), ("a", 3)), got("m4", "a", 4)]
    counts = checked(published(*LOG), rec(("a", 0), items))
    assert counts.holds, counts.violations
    assert (counts.received, counts.lost_in_gap, counts.gaps) == (2, 2, 1)


def test_a_gap_that_does_not_start_at_the_last_position_is_a_violation() -> None:
    items: list[Got | Hole] = [got("m1", "a", 1), Hole(0.0, ("a", 2), ("a", 3)), got("m4", "a", 4)]
    counts = checked(published(*LOG), rec(("a", 0), items))
    assert counts.violations[0] == "s: gap from a:2 to a:3, but the last position it had was a:1"
    assert counts.lost_silently == 1  # m2: before the gap, never received


def test_a_gap_over_a_message_that_arrived_is_a_violation() -> None:
    items: list[Got | Hole] = [got("m1", "a", 1), got("m2", "a", 2), Hole(0.0, ("a", 2), ("a", 4))]
    items += [got("m4", "a", 4)]
    counts = checked(published(*LOG), rec(("a", 0), items))
    assert any("inside a reported gap" in v for v in counts.violations)


def test_a_gap_across_an_epoch_change_covers_the_rest_of_the_old_epoch() -> None:
    log = published(("m1", "a", 1), ("m2", "a", 2), ("n1", "b", 1), ("n2", "b", 2))
    items: list[Got | Hole] = [got("m1", "a", 1), Hole(0.0, ("a", 1), ("b", 1)), got("n2", "b", 2)]
    counts = checked(log, rec(("a", 0), items))
    assert counts.holds, counts.violations
    assert (counts.sent, counts.lost_in_gap, counts.empty_gaps) == (4, 2, 0)


def test_an_epoch_change_with_nothing_lost_is_an_empty_gap() -> None:
    log = published(("m1", "a", 1), ("n1", "b", 1))
    items: list[Got | Hole] = [got("m1", "a", 1), Hole(0.0, ("a", 1), ("b", 0)), got("n1", "b", 1)]
    counts = checked(log, rec(("a", 0), items))
    assert counts.holds, counts.violations
    assert (counts.gaps, counts.empty_gaps, counts.lost_in_gap) == (1, 1, 0)


def test_an_offset_nobody_knows_is_still_owed() -> None:
    """Offsets count every stored message: offset 2 exists although its publisher never
    heard back and no subscriber got it."""
    log = published(("m1", "a", 1), ("m3", "a", 3))
    counts = checked(log, rec(("a", 0), [got("m1", "a", 1), got("m3", "a", 3)]))
    assert counts.violations == ["s: lost silently a:2=?"]


def test_a_publish_without_an_answer_is_placed_by_its_subscribers() -> None:
    log = published(("m1", "a", 1))
    log.sent("m2", 1.0)  # no answer
    record = rec(("a", 0), [got("m1", "a", 1), got("m2", "a", 2)])
    counts = checked(log, record)
    assert counts.holds, counts.violations
    assert counts.sent == 2


def test_what_follows_a_reported_failure_of_the_subscription_is_lost_reported() -> None:
    record = rec(("a", 0), [got("m1", "a", 1)])
    record.stopped = Stopped(0.0, ("a", 1), "subscribe unavailable")
    counts = checked(published(*LOG), record)
    assert counts.holds, counts.violations
    assert (counts.received, counts.lost_reported, counts.lost_silently) == (1, 3, 0)


def test_never_subscribed_is_a_violation() -> None:
    assert not checked(published(*LOG), Record("s")).holds


def test_direct_messages_are_checked_like_a_channel() -> None:
    # A user's inbox has positions: the same rules, the same checks (a gap of channel None
    # is a Hole in the subscriber's direct record).
    log = published(("d1", "i", 1), ("d2", "i", 2), ("d3", "i", 3), ("d4", "i", 4))
    record = rec(("i", 0), [got("d1", "i", 1), Hole(0.0, ("i", 1), ("i", 3)), got("d4", "i", 4)])
    counts = checked(log, record)
    assert counts.holds, counts.violations
    assert (counts.received, counts.lost_in_gap, counts.gaps) == (2, 2, 1)
    record = rec(("i", 0), [got("d2", "i", 2), got("d1", "i", 1), got("d2", "i", 2)])
    counts = checked(log, record)
    assert (counts.received, counts.duplicated, counts.lost_silently) == (2, 1, 2)


def test_recovery_time_is_until_the_first_message_published_after_the_fault() -> None:
    log = published(*LOG)  # m1 sent at 0, m2 at 1, m3 at 2, m4 at 3
    items = [got("m1", "a", 1, 0.1), got("m2", "a", 2, 1.1), got("m3", "a", 3, 2.6)]
    record = rec(("a", 0), items)
    assert recovery_times(record, log, [1.5]) == [2.6 - 1.5]
    assert recovery_times(record, log, [3.5]) == []  # never recovered: left out
