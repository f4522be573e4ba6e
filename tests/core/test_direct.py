"""Direct messages to one session: bounded until acknowledged."""

from __future__ import annotations

from pushwire import Config, Hub, Session
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING
from tests.helpers import RecordingTransport


async def test_a_session_one_message_over_its_unacknowledged_bound_is_told_and_closed() -> None:
    hub = Hub(config=Config(max_unacked=2))
    ended: list[tuple[int, str]] = []

    @hub.on_disconnect
    def record(session: Session, code: int, reason: str) -> None:
        ended.append((code, reason))

    transport = RecordingTransport(ENVELOPE_FRAMING)
    session = hub.lifecycle.open(transport, "alice", resumable=True)
    assert hub.send("alice", "one") == hub.send("alice", "two") == 1
    assert (transport.closed, session.closed) == (None, False)  # at the bound: kept
    hub.send("alice", "three")
    reason = "unacknowledged messages over the bound (3 messages, 11 bytes; limits 2, 1048576)"
    error = {"type": "error", "code": "overflow", "message": reason}
    assert transport.written[-1] == ENVELOPE_FRAMING.frame_control(error)
    assert transport.closed == (4003, "unacknowledged messages over the bound")
    assert session.closed and session.id not in hub.sessions
    assert ended == [(4003, reason)]
    assert hub.send("alice", "four") == 0


async def test_acknowledged_messages_no_longer_count_against_the_bound() -> None:
    hub = Hub(config=Config(max_unacked=2))
    transport = RecordingTransport(ENVELOPE_FRAMING)
    session = hub.lifecycle.open(transport, "alice", resumable=True)
    hub.send("alice", "one")
    hub.send("alice", "two")
    session.ack(2)
    hub.send("alice", "three")
    hub.send("alice", "four")
    assert transport.closed is None and (session.unacked_bytes, session.seq) == (9, 4)
