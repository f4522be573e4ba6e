"""A session's channels read as a set, however many there are."""

from __future__ import annotations

from collections.abc import Set

from pushwire.core.sessions import SMALL_CHANNELS, ChannelSet, Session


def test_a_session_s_channels_read_as_a_set() -> None:
    session = Session(None)
    channels = session.channels
    assert not channels and len(channels) == 0
    channels.add("room")
    channels.add("room")  # added once
    one: Set[str] = {"room"}
    assert channels == one and "room" in channels and "hall" not in channels
    assert channels | {"hall"} == {"room", "hall"}
    channels.discard("hall")  # not there: nothing happens
    channels.discard("room")
    assert set(channels) == set()


def test_many_channels_and_back() -> None:
    names = [f"room-{k}" for k in range(SMALL_CHANNELS * 3)]
    channels = ChannelSet()
    for name in names:
        channels.add(name)
    every: Set[str] = set(names)
    assert channels == every and len(channels) == len(names)
    for name in names[::2]:
        channels.discard(name)
    assert sorted(channels) == sorted(names[1::2])
    assert all(name in channels for name in names[1::2])
    assert not any(name in channels for name in names[::2])
