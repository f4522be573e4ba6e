"""Sessions' lives on a clock the test moves: grace, resumption, the end of a session."""

from __future__ import annotations

import pytest

from pushwire import Config, Hub, Session
from pushwire.clock import ManualClock
from pushwire.transports.stream import NDJSON_FRAMING
from tests.helpers import RecordingTransport


def recording_hub(clock: ManualClock) -> tuple[Hub, list[tuple[str, int, str]]]:
    """A hub with a 5-second grace that records its disconnect handler's calls."""
    hub = Hub(config=Config(session_grace=5.0), clock=clock)
    ended: list[tuple[str, int, str]] = []

    @hub.on_disconnect
    def record(session: Session, code: int, reason: str) -> None:
        ended.append((session.id, code, reason))

    return hub, ended


def attached(hub: Hub, *, resumable: bool = True) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport(NDJSON_FRAMING)
    session = hub.lifecycle.open(transport, "alice", resumable=resumable)
    hub.channels.subscribe(session, "room")
    return session, transport


async def test_a_detached_session_ends_when_its_grace_ends_not_before() -> None:
    clock = ManualClock()
    hub, ended = recording_hub(clock)
    session, transport = attached(hub)
    hub.lifecycle.detach(session, transport, 1006, "connection lost", final=False)
    assert hub.channels.subscriber_count("room") == 0  # out of its channels meanwhile
    assert (await hub.presence("room")).count == 1  # but still present
    clock.advance(4.99)
    assert session.id in hub.sessions and ended == []
    clock.advance(0.01)
    assert session.id not in hub.sessions and session.closed
    assert ended == [(session.id, 1006, "connection lost")]  # once, with its connection's end
    assert (await hub.presence("room")).count == 0


@pytest.mark.parametrize(("resumable", "final"), [(False, False), (True, True)])
async def test_a_session_that_will_not_come_back_ends_with_its_connection(
    resumable: bool, final: bool
) -> None:
    clock = ManualClock()
    hub, ended = recording_hub(clock)
    session, transport = attached(hub, resumable=resumable)
    hub.lifecycle.detach(session, transport, 1000, "bye", final=final)
    assert ended == [(session.id, 1000, "bye")] and clock.pending == 0
    assert (
        hub.lifecycle.resume(
            session.id, session.secret, session.endpoint, RecordingTransport(NDJSON_FRAMING)
        )
        is None
    )


async def test_resuming_on_a_new_connection_closes_the_old_one_with_4004() -> None:
    clock = ManualClock()
    hub, ended = recording_hub(clock)
    session, old = attached(hub)
    new = RecordingTransport(NDJSON_FRAMING)
    assert (
        hub.lifecycle.resume(session.id, session.secret, session.endpoint, new) is session
        and session.transport is new
    )
    assert old.closed == (4004, "session resumed on another connection")
    assert (
        hub.channels.subscriber_count("room") == 0
    )  # the client resubscribes on its new connection
    assert (await hub.presence("room")).count == 1
    hub.lifecycle.detach(session, old, 1006, "late report of the old connection", final=True)
    assert not session.closed and ended == []  # not its connection any more


@pytest.mark.parametrize(
    ("secret", "endpoint"),
    [(None, "general"), ("", "general"), ("wrong", "general"), ("ok", "echo"), ("ok", "")],
)
async def test_a_resumption_without_the_secret_or_at_another_endpoint_touches_nothing(
    secret: str | None, endpoint: str
) -> None:
    clock = ManualClock()
    hub, ended = recording_hub(clock)
    old = RecordingTransport(NDJSON_FRAMING)
    session = hub.lifecycle.open(old, "alice", resumable=True, endpoint="general")
    shown = session.secret if secret == "ok" else secret
    thief = RecordingTransport(NDJSON_FRAMING)
    assert hub.lifecycle.resume(session.id, shown, endpoint, thief) is None
    assert session.transport is old and old.closed is None and ended == []
    assert hub.lifecycle.claim(session.id, session.secret, "general") is session


def test_every_session_has_its_own_128_bit_resume_secret_apart_from_its_id() -> None:
    hub = Hub()
    first = hub.lifecycle.open(RecordingTransport(NDJSON_FRAMING), resumable=True)
    second = hub.lifecycle.open(RecordingTransport(NDJSON_FRAMING), resumable=True)
    assert len(first.secret) == 22 and first.secret not in (first.id, second.secret)
    assert first.proves(first.secret) and not first.proves(second.secret)
    assert not first.proves(None) and not first.proves("é" * 22)
