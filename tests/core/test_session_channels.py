"""A session's channels read as a set and its presence channels as a tuple, however many there
are (one is kept as its name); its resume secret, derived from its id unless given."""

from __future__ import annotations

import os
import re
from collections.abc import Set

from pushwire import Hub
from pushwire.core import sessions as sessions_module
from pushwire.core.sessions import SMALL_CHANNELS, ChannelSet, Session, new_secret
from pushwire.transports.websocket.framing import RAW_FRAMING
from tests.helpers import RecordingTransport


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


def test_one_channel_two_and_back_to_one() -> None:
    channels = ChannelSet(["room"])
    channels.add("hall")
    channels.discard("room")
    assert list(channels) == ["hall"] and len(channels) == 1
    assert "hall" in channels and "room" not in channels and "hal" not in channels
    channels.discard("hall")
    assert not channels and list(channels) == []


def test_presence_channels_in_join_order() -> None:
    session = Session(None)
    assert not session.present
    assert session.add_present("room") and not session.add_present("room")
    assert list(session.present) == ["room"]
    assert "roo" not in session.present  # a tuple of names, never a string's letters
    assert session.add_present("hall") and list(session.present) == ["room", "hall"]
    assert session.discard_present("room") and not session.discard_present("room")
    assert list(session.present) == ["hall"]
    assert session.discard_present("hall") and not session.present


def test_a_resume_secret_is_derived_from_the_id_unless_given() -> None:
    first, second = Session(None), Session(None)
    assert first.secret == first.secret and len(first.secret) == 22
    assert first.secret != second.secret and first.secret != first.id
    assert first.proves(first.secret) and not first.proves(second.secret)
    handed_over = Session(None, session_id=first.id, secret="kept-as-given")
    assert handed_over.secret == "kept-as-given" and not handed_over.proves(first.secret)


def test_session_ids_are_url_safe_and_never_repeat_across_refills_of_the_random_pool() -> None:
    sessions = [Session(None) for _ in range(1000)]  # some 6 pools of random characters
    ids = [session.id for session in sessions]
    public = [session.public_id for session in sessions]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", name) for name in ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}", name) for name in public)
    assert len(set(ids) | set(public)) == 2000
    assert len(set("".join(ids))) > 60  # every character of the alphabet, as random ones are


def test_ids_opened_by_the_lifecycle_come_from_one_draw_and_never_repeat() -> None:
    hub = Hub()
    transport = RecordingTransport(RAW_FRAMING)
    sessions = [hub.lifecycle.open(transport) for _ in range(400)]
    ids = [session.id for session in sessions] + [session.public_id for session in sessions]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", session.id) for session in sessions)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}", session.public_id) for session in sessions)
    assert len(set(ids)) == 800
    longer = [new_secret() for _ in range(3)] + [sessions_module._random_text(50)]
    assert [len(text) for text in longer] == [22, 22, 22, 50] and len(set(longer)) == 4
    assert re.fullmatch(r"[A-Za-z0-9_-]{50}", longer[-1])


def test_session_ids_come_in_pairs_each_once_across_refills_and_forks() -> None:
    pairs = [sessions_module.new_session_ids() for _ in range(500)]  # a few refills
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", id_) for id_, _ in pairs)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}", public) for _, public in pairs)
    everything = [text for pair in pairs for text in pair]
    assert len(set(everything)) == len(everything)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child's next pair is drawn anew, not the parent's next
        os.write(writer, " ".join(sessions_module.new_session_ids()).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        assert tuple(pipe.read().split()) != sessions_module.new_session_ids()
