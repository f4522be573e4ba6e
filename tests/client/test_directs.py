"""The client's place in its user's inbox, without sockets."""

from __future__ import annotations

from pushwire.client import Gap
from pushwire.client.directs import DirectPosition


def test_a_client_without_a_position_starts_where_the_server_says() -> None:
    position = DirectPosition()
    assert position.hello() is None and position.position is None
    position.started({"type": "inbox", "epoch": "e1", "offset": 7})
    assert position.hello() == {"epoch": "e1", "offset": 7}
    position.started({"type": "inbox", "epoch": "e1", "offset": 9})  # kept: it has one
    assert position.position == ("e1", 7)


def test_replays_are_dropped_and_new_messages_move_the_position() -> None:
    position = DirectPosition(("e1", 3))
    assert position.arrived("e1", 3) == (False, None)
    assert position.arrived("e1", 4) == (True, None)
    assert position.position == ("e1", 4)


def test_a_hole_or_a_new_epoch_seen_live_is_a_gap_with_its_range() -> None:
    position = DirectPosition(("e1", 4))
    assert position.arrived("e1", 7) == (True, Gap(None, "e1", 4, "e1", 6))
    assert position.arrived("e2", 1) == (True, Gap(None, "e1", 7, "e2", 0))
    assert position.position == ("e2", 1)


def test_the_servers_gap_moves_the_position_past_what_is_lost() -> None:
    position = DirectPosition(("e1", 2))
    gap = position.skip({"from": {"epoch": "e1", "offset": 2}, "to": {"epoch": "e1", "offset": 5}})
    assert gap == Gap(None, "e1", 2, "e1", 5)
    assert position.position == ("e1", 5)
