"""Token expiry on a clock the test moves: a session's connection is closed 4005 when its
token expires, unless a new token moved its expiry; one sweep serves every session."""

from __future__ import annotations

import json

import pytest

from pushwire import Config, Hub, Session
from pushwire.clock import ManualClock
from pushwire.core.expiry import TokenExpiry
from pushwire.transports.stream import NDJSON_FRAMING
from pushwire.transports.websocket.framing import RAW_FRAMING
from tests.helpers import RecordingTransport

WALL = 1_700_000_000.0  # the wall clock when the test's clock reads 0
EXPIRED = (4005, "token expired")


def closed(transport: RecordingTransport) -> tuple[int, str] | None:
    """How the transport was closed (a call: the test reads it again after the clock moves)."""
    return transport.closed


def session_on(framing: object = NDJSON_FRAMING) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport(framing)  # type: ignore[arg-type]
    return Session(transport, "alice", resumable=True), transport


def expiry(clock: ManualClock, leeway: float = 0.0, granularity: float = 1.0) -> TokenExpiry:
    """Its wall clock moves with `clock`."""
    return TokenExpiry(
        clock, wall=lambda: WALL + clock.time(), leeway=leeway, granularity=granularity
    )


def test_a_connection_is_closed_with_4005_when_its_token_expires_not_before() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    session, transport = session_on()
    watch.watch(session, WALL + 10)
    assert session.token_expires == WALL + 10
    clock.advance(9.99)
    assert closed(transport) is None and not watch.passed(session)
    clock.advance(0.01)
    assert closed(transport) == EXPIRED and watch.passed(session)
    # The error envelope goes first, where the wire has envelopes.
    assert [json.loads(line) for line in transport.written] == [
        {"type": "error", "code": "token_expired", "message": "token expired"}
    ]


def test_a_raw_connection_is_closed_with_4005_and_gets_no_envelope() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    session, transport = session_on(RAW_FRAMING)
    watch.watch(session, WALL + 3)
    clock.advance(3)
    assert closed(transport) == EXPIRED
    assert transport.written == [b""]  # the raw framing has no place for an error


def test_the_sweep_closes_a_connection_at_most_one_granularity_late() -> None:
    clock = ManualClock()
    watch = expiry(clock, granularity=1.0)
    session, transport = session_on()
    watch.watch(session, WALL + 10.2)
    clock.advance(10.99)
    assert closed(transport) is None
    assert watch.passed(session)  # expired already: a resumption without a token is refused
    clock.advance(0.01)
    assert closed(transport) == EXPIRED


def test_the_leeway_lets_a_session_live_past_its_exp() -> None:
    clock = ManualClock()
    watch = expiry(clock, leeway=5.0)
    session, transport = session_on()
    watch.watch(session, WALL + 10)
    clock.advance(14.99)
    assert closed(transport) is None
    clock.advance(0.01)
    assert closed(transport) == EXPIRED


def test_a_new_token_moves_the_expiry() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    session, transport = session_on()
    watch.watch(session, WALL + 10)
    clock.advance(8)
    watch.watch(session, WALL + 20)  # refreshed: 20 s after the wall clock's start
    clock.advance(11.99)  # 19.99 s in
    assert closed(transport) is None and not watch.passed(session)
    clock.advance(0.01)
    assert closed(transport) == EXPIRED


def test_a_token_without_exp_never_expires() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    session, transport = session_on()
    watch.watch(session, WALL + 10)
    watch.watch(session, None)  # refreshed with a token that has no exp
    clock.advance(3600)
    assert closed(transport) is None and not watch.passed(session)
    assert session.token_expires is None and watch.remaining(session) is None
    assert clock.pending == 0


def test_a_forgotten_session_is_not_closed() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    session, transport = session_on()
    watch.watch(session, WALL + 10)
    watch.forget(session)
    assert watch.watched == 0
    clock.advance(20)
    assert closed(transport) is None
    assert clock.pending == 0  # the sweep ran (over nothing) and armed nothing more


def test_a_detached_session_is_not_closed_but_counts_as_expired() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    session, _ = session_on()
    session.transport = None
    watch.watch(session, WALL + 10)
    clock.advance(10)
    assert not session.closed and watch.passed(session)
    assert watch.remaining(session) == 0


def test_one_timer_serves_every_session() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    sessions = [session_on() for _ in range(300)]
    for number, (session, _) in enumerate(sessions):
        watch.watch(session, WALL + 1 + number / 10)  # 30 seconds' worth of expiries
    assert clock.pending == 1 and watch.watched == 300
    clock.advance(15)
    ended = [closed(transport) is not None for _, transport in sessions]
    # Those due within 15 s (the sweep at 15 s included), and no other.
    assert ended == [1 + number / 10 <= 15 for number in range(300)]
    assert clock.pending == 1
    clock.advance(16)
    assert all(closed(transport) == EXPIRED for _, transport in sessions)
    assert clock.pending == 0 and watch.watched == 0


def test_an_earlier_expiry_rearms_the_sweep() -> None:
    clock = ManualClock()
    watch = expiry(clock)
    late, late_transport = session_on()
    early, early_transport = session_on()
    watch.watch(late, WALL + 60)
    watch.watch(early, WALL + 5)
    assert clock.pending == 1
    clock.advance(5)
    assert closed(early_transport) == EXPIRED and closed(late_transport) is None
    clock.advance(55)
    assert closed(late_transport) == EXPIRED


def test_a_granularity_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^the sweep's granularity must be positive \(0 s\)$"):
        TokenExpiry(ManualClock(), granularity=0)


# -- the hub -------------------------------------------------------------------------------------


def test_a_session_that_ends_is_forgotten_by_the_expiry() -> None:
    clock = ManualClock()
    hub = Hub(config=Config(session_grace=5.0), clock=clock)
    transport = RecordingTransport(NDJSON_FRAMING)
    session = hub.lifecycle.open(transport, "alice", resumable=True)
    hub.expiry.watch(session, hub.expiry.wall() + 3600)
    assert hub.expiry.watched == 1
    hub.close_session(session, 1000, "bye")
    assert hub.expiry.watched == 0


def test_the_hub_reads_the_leeway_from_its_config() -> None:
    hub = Hub(config=Config(jwt_leeway=0.0, jwt_secret="s" * 32), clock=ManualClock())
    assert hub.expiry.leeway == 0.0
    assert hub.access.tokens is not None and hub.access.tokens.leeway == 0.0
    assert Hub(clock=ManualClock()).expiry.leeway == 5.0


def test_an_adopted_session_keeps_its_token_expiry_and_grants() -> None:
    clock = ManualClock()
    hub = Hub(clock=clock)
    hub.lifecycle.expiry.wall = lambda: WALL + clock.time()
    transport = RecordingTransport(NDJSON_FRAMING)
    session = hub.lifecycle.adopt(
        transport,
        "alice",
        {},
        grants=frozenset({"vip:lounge"}),
        token_expires=WALL - 3,  # 2 s of leeway left
    )
    assert session.grants == frozenset({"vip:lounge"}) and session.token_expires == WALL - 3
    clock.advance(1.99)
    assert closed(transport) is None
    clock.advance(0.01)
    assert closed(transport) == EXPIRED
