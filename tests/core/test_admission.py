"""The bounds of new sessions (pushwire.core.admission) and a session's message rates, on a
clock the test moves: each at its bound and one over."""

from __future__ import annotations

import pytest

from pushwire import Config, Hub
from pushwire.clock import ManualClock
from pushwire.endpoint import ClientInfo, Endpoint, RawHandler
from pushwire.errors import RateLimited, TooManySessions
from pushwire.transports.stream import NDJSON_FRAMING
from tests.helpers import RecordingTransport

ATTACKER = "192.0.2.66"


def _hub(clock: ManualClock, **settings: object) -> Hub:
    return Hub(config=Config(session_grace=5.0, **settings), clock=clock)  # type: ignore[arg-type]


def _open(hub: Hub, address: str | None = ATTACKER, user: str | None = None) -> RecordingTransport:
    hub.admission.admit(address)
    hub.admission.admit_user(user, address)
    transport = RecordingTransport(NDJSON_FRAMING)
    hub.lifecycle.open(transport, user, resumable=True, address=address)
    return transport


def test_handshakes_per_address_are_a_token_bucket() -> None:
    clock = ManualClock(1000.0)
    hub = _hub(clock, handshakes_per_ip=2.0, handshake_burst=3)
    for _ in range(3):
        hub.admission.handshake(ATTACKER)  # at the bound
    with pytest.raises(RateLimited) as refused:
        hub.admission.handshake(ATTACKER)  # one over
    assert refused.value.http_status == 429 and refused.value.close_code == 4029
    assert refused.value.retry_after == pytest.approx(0.5)
    hub.admission.handshake("192.0.2.1")  # another address is not touched
    clock.advance(0.5)
    hub.admission.handshake(ATTACKER)  # one more after 1/rate
    with pytest.raises(RateLimited):
        hub.admission.handshake(ATTACKER)


def test_exempt_addresses_are_not_bounded() -> None:
    clock = ManualClock()
    hub = _hub(
        clock,
        handshakes_per_ip=1.0,
        handshake_burst=1,
        max_sessions_per_ip=1,
        limit_exempt=("10.0.0.0/8",),
        per_ip_exempt_loopback=True,
    )
    for address in ("10.1.2.3", "127.0.0.1", "::1"):
        for _ in range(3):
            hub.admission.handshake(address)
            _open(hub, address)
    hub.admission.handshake("192.0.2.1")
    with pytest.raises(RateLimited):
        hub.admission.handshake("192.0.2.1")


def test_loopback_counts_unless_exempt() -> None:
    hub = _hub(ManualClock(), handshakes_per_ip=1.0, handshake_burst=1)
    hub.admission.handshake("127.0.0.1")
    with pytest.raises(RateLimited):
        hub.admission.handshake("127.0.0.1")


def test_sessions_per_address_count_until_the_session_ends() -> None:
    clock = ManualClock()
    hub = _hub(clock, max_sessions_per_ip=2)
    first = _open(hub)
    _open(hub)  # at the bound
    with pytest.raises(TooManySessions) as refused:
        _open(hub)  # one over
    assert refused.value.http_status == 503 and refused.value.close_code == 4029
    assert refused.value.error_code == "limit"
    _open(hub, "192.0.2.1")  # another address has its own
    # A detached session still counts while its client may come back...
    session = next(s for s in hub.sessions.values() if s.transport is first)
    hub.lifecycle.detach(session, first, 1006, "connection lost", final=False)
    with pytest.raises(TooManySessions):
        hub.admission.admit(ATTACKER)
    clock.advance(5.0)  # ...and no longer once its grace is over
    hub.admission.admit(ATTACKER)
    assert hub.admission.per_address == {ATTACKER: 1, "192.0.2.1": 1}


def test_sessions_in_total() -> None:
    hub = _hub(ManualClock(), max_sessions=2)
    _open(hub, "192.0.2.1")
    _open(hub, "192.0.2.2")  # at the bound
    with pytest.raises(TooManySessions):
        _open(hub, "192.0.2.3")  # one over, from any address
    assert hub.admission.total == 2


def test_sessions_per_user() -> None:
    hub = _hub(ManualClock(), max_sessions_per_user=2)
    _open(hub, user="ann")
    _open(hub, user="ann")  # at the bound
    with pytest.raises(TooManySessions):
        _open(hub, user="ann")  # one over
    _open(hub, user="bob")
    _open(hub, user=None)  # no user: no bound


def _raw_echo(hub: Hub, address: str = ATTACKER) -> tuple[RawHandler, RecordingTransport]:
    transport = RecordingTransport(NDJSON_FRAMING)
    client = ClientInfo("/echo", [], {}, None, address)
    handler = RawHandler(hub, Endpoint("echo"), transport, client)
    handler.open()
    return handler, transport


def test_a_raw_client_over_its_message_rate_is_closed_4029() -> None:
    clock = ManualClock(50.0)
    hub = _hub(clock, messages_per_second=1.0, message_burst=3)
    handler, transport = _raw_echo(hub)
    for _ in range(3):
        handler.receive("hi")  # at the bound
    assert len(transport.written) == 3 and transport.closed is None
    clock.advance(1.0)
    handler.receive("hi")  # a token came back
    assert len(transport.written) == 4 and transport.closed is None
    handler.receive("hi")  # one over: raw mode has no error frame
    assert len(transport.written) == 4
    assert transport.closed == (4029, "rate limited (over 1 messages/s)")


def test_a_raw_client_over_its_byte_rate_is_closed_4029() -> None:
    clock = ManualClock()
    hub = _hub(clock, bytes_per_second=10.0, byte_burst=100, max_message=100)
    handler, transport = _raw_echo(hub)
    handler.receive("x" * 100)  # at the bound
    assert transport.closed is None
    handler.receive("x")  # one over
    assert transport.closed == (4029, "rate limited (over 10 bytes/s)")


def test_an_exempt_address_has_no_message_rate() -> None:
    hub = _hub(ManualClock(), messages_per_second=1.0, message_burst=1, limit_exempt=(ATTACKER,))
    handler, transport = _raw_echo(hub)
    for _ in range(10):
        handler.receive("hi")
    assert len(transport.written) == 10 and transport.closed is None
