"""The client's presence roster on its own: snapshots, joins and leaves, what a
reconnection missed, the bound of a listener's queue."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pushwire.client import ClientClosed, Join, Leave, Member, Presence
from pushwire.client.presence import Roster, parse_presence


def snapshot(
    channel: str, *users: str, count: int | None = None, truncated: bool = False
) -> Presence:
    return parse_presence(
        {
            "type": "presence",
            "channel": channel,
            "count": len(users) if count is None else count,
            "members": [{"member": f"m-{user}", "user": user} for user in users],
            "truncated": truncated,
        }
    )


def change(kind: str, channel: str, user: str, count: int) -> dict[str, object]:
    member = {"member": f"m-{user}", "user": user, "info": {"tab": 1}}
    return {"type": kind, "channel": channel, "member": member, "count": count}


async def test_a_later_snapshot_announces_who_came_and_went_meanwhile() -> None:
    roster = Roster(max_queue=10)
    events = roster.events()
    roster.snapshot(snapshot("room", "ann", "bob"))
    roster.snapshot(snapshot("room", "bob", "cat"))
    assert roster.channels["room"].users == ["bob", "cat"]
    found = [await anext(events), await anext(events)]
    assert [(type(e), e.member.user, e.count) for e in found] == [
        (Join, "cat", 2),
        (Leave, "ann", 2),
    ]


async def test_a_truncated_snapshot_announces_no_leaves() -> None:
    roster = Roster(max_queue=10)
    events = roster.events()
    roster.snapshot(snapshot("room", "ann", "bob"))
    roster.snapshot(snapshot("room", "cat", count=3, truncated=True))
    roster.close(ClientClosed(1000, "closed by the client"))
    assert [(type(e), e.member.user) async for e in events] == [(Join, "cat")]


async def test_joins_and_leaves_change_the_members_and_the_count() -> None:
    roster = Roster(max_queue=10)
    roster.snapshot(snapshot("room", "ann"))
    roster.change(change("join", "room", "bob", 2))
    assert roster.channels["room"].members["m-bob"] == Member("m-bob", "bob", {"tab": 1})
    roster.change(change("leave", "room", "ann", 1))
    presence = roster.channels["room"]
    assert (presence.count, presence.users, presence.truncated) == (1, ["bob"], False)


def test_a_join_of_a_channel_without_members_known_is_ignored() -> None:
    roster = Roster(max_queue=10)
    roster.change(change("join", "room", "bob", 2))
    assert roster.channels == {}


@pytest.mark.parametrize(("changes", "dropped"), [(3, 0), (4, 1)])
async def test_a_listener_keeps_max_queue_events_and_drops_the_next(
    changes: int, dropped: int, caplog: pytest.LogCaptureFixture
) -> None:
    roster = Roster(max_queue=3)
    events = roster.events()
    roster.snapshot(snapshot("room"))
    with caplog.at_level(logging.WARNING, "pushwire.client"):
        for count in range(1, changes + 1):
            roster.change(change("join", "room", f"u{count}", count))
    assert roster.channels["room"].count == changes  # the roster stays right regardless
    assert len(caplog.records) == dropped
    if dropped:
        assert caplog.records[0].getMessage() == "presence event dropped: 3 unread already"
    await events.aclose()  # no more listening; what was kept is still read
    assert [event.count async for event in events] == [1, 2, 3]


async def test_waiting_for_a_count_ends_when_it_is_reached_or_the_client_closes() -> None:
    roster = Roster(max_queue=10)
    roster.snapshot(snapshot("room", "ann"))

    async def bob_joins() -> None:  # runs once the waiter waits
        roster.change(change("join", "room", "bob", 2))

    async def closing() -> None:
        roster.close(ClientClosed(1000, "closed by the client"))

    reached, _ = await asyncio.gather(roster.wait("room", 2, None, timeout=5), bob_joins())
    assert reached.users == ["ann", "bob"]
    with pytest.raises(ClientClosed, match="closed: 1000 closed by the client"):
        await asyncio.gather(roster.wait("room", 5, None, timeout=5), closing())
