"""Subscriptions on their own: the position each channel resumes from, replays dropped."""

from __future__ import annotations

from pushwire.client import Gap
from pushwire.client.subscriptions import Subscriptions


def subscribed(channel: str, epoch: str, offset: int) -> dict[str, object]:
    return {"type": "subscribed", "channel": channel, "epoch": epoch, "offset": offset}


def test_a_first_subscribe_asks_for_no_position() -> None:
    subscriptions = Subscriptions()
    assert subscriptions.add("news", presence=False) is not None
    assert subscriptions.envelope("news") == {
        "type": "subscribe",
        "channel": "news",
        "presence": False,
    }


def test_a_resubscription_resumes_after_the_last_message_seen() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=True)
    subscriptions.subscribed(subscribed("news", "e1", 4))
    assert subscriptions.fresh("news", "e1", 5)
    assert list(subscriptions.envelopes()) == [
        {
            "type": "subscribe",
            "channel": "news",
            "presence": True,
            "since": {"epoch": "e1", "offset": 5},
        }
    ]


def test_the_answer_to_a_resubscription_keeps_the_position_seen() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False)
    subscriptions.subscribed(subscribed("news", "e1", 4))
    subscriptions.fresh("news", "e1", 6)
    subscriptions.subscribed(subscribed("news", "e1", 9))
    assert subscriptions.envelope("news")["since"] == {"epoch": "e1", "offset": 6}


def test_a_replayed_message_is_not_fresh_and_a_new_epoch_is() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False)
    subscriptions.subscribed(subscribed("news", "e1", 4))
    assert [subscriptions.fresh("news", "e1", offset) for offset in (4, 5, 5, 3, 6)] == [
        False,
        True,
        False,
        False,
        True,
    ]
    assert subscriptions.fresh("news", "e2", 1)


def test_messages_of_a_channel_not_subscribed_to_are_all_fresh() -> None:
    subscriptions = Subscriptions()
    assert subscriptions.fresh("news", "e1", 1) and subscriptions.fresh("news", "e1", 1)


def test_a_gap_moves_the_position_past_what_was_lost() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False)
    subscriptions.subscribed(subscribed("news", "e1", 4))
    gap = subscriptions.skip(
        {
            "type": "gap",
            "channel": "news",
            "from": {"epoch": "e1", "offset": 4},
            "to": {"epoch": "e1", "offset": 20},
        }
    )
    assert gap == Gap("news", "e1", 4, "e1", 20)
    assert not subscriptions.fresh("news", "e1", 20)
    assert subscriptions.fresh("news", "e1", 21)


def gap(channel: str, start: tuple[str, int], end: tuple[str, int]) -> dict[str, object]:
    return {
        "type": "gap",
        "channel": channel,
        "from": {"epoch": start[0], "offset": start[1]},
        "to": {"epoch": end[0], "offset": end[1]},
    }


def test_a_gap_the_client_has_passed_already_is_no_gap() -> None:
    # A node recovering a channel after a broker outage tells every subscriber there the
    # gap from where the channel stood on that node; this client had re-subscribed
    # meanwhile and got the new epoch's messages already.
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False)
    subscriptions.subscribed(subscribed("news", "e1", 28))
    assert subscriptions.skip(gap("news", ("e1", 28), ("e2", 0))) == Gap("news", "e1", 28, "e2", 0)
    assert subscriptions.fresh("news", "e2", 1) and subscriptions.fresh("news", "e2", 3)
    assert subscriptions.skip(gap("news", ("e1", 28), ("e2", 0))) is None
    assert subscriptions.skip(gap("news", ("e1", 28), ("e2", 3))) is None
    assert not subscriptions.fresh("news", "e2", 3)  # the position did not move back


def test_a_gap_is_told_from_the_last_position_the_client_has() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False)
    subscriptions.subscribed(subscribed("news", "e1", 4))
    assert subscriptions.fresh("news", "e1", 9)
    assert subscriptions.skip(gap("news", ("e1", 4), ("e2", 0))) == Gap("news", "e1", 9, "e2", 0)
    assert subscriptions.fresh("news", "e2", 2)
    assert subscriptions.skip(gap("news", ("e1", 9), ("e2", 5))) == Gap("news", "e2", 2, "e2", 5)
    assert subscriptions.fresh("news", "e2", 6)


def test_subscribing_again_changes_presence_and_keeps_the_position() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False)
    subscriptions.subscribed(subscribed("news", "e1", 4))
    assert subscriptions.add("news", presence=True) is None
    assert subscriptions.envelope("news")["presence"] is True
    assert subscriptions.envelope("news")["since"] == {"epoch": "e1", "offset": 4}


def test_removing_a_stale_subscription_leaves_the_new_one() -> None:
    subscriptions = Subscriptions()
    first = subscriptions.add("news", presence=False)
    subscriptions.remove("news")
    subscriptions.add("news", presence=False)
    subscriptions.remove("news", first)
    assert "news" in subscriptions


def test_a_first_subscribe_with_rewind_asks_for_it_and_takes_what_comes_before_the_answer() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False, rewind=3)
    assert subscriptions.envelope("news") == {
        "type": "subscribe",
        "channel": "news",
        "presence": False,
        "rewind": 3,
    }
    subscriptions.subscribed(subscribed("news", "e1", 10))
    # The last three messages (8, 9, 10) come from history: new, not replays.
    assert [subscriptions.fresh("news", "e1", offset) for offset in (8, 9, 10, 11)] == [
        True,
        True,
        True,
        True,
    ]
    # A re-subscription resumes from the position: no rewind again.
    assert subscriptions.envelope("news") == {
        "type": "subscribe",
        "channel": "news",
        "presence": False,
        "since": {"epoch": "e1", "offset": 11},
    }


def test_rewind_further_back_than_the_channel_starts_from_its_beginning() -> None:
    subscriptions = Subscriptions()
    subscriptions.add("news", presence=False, rewind=50)
    subscriptions.subscribed(subscribed("news", "e1", 2))
    assert subscriptions.fresh("news", "e1", 1)
