"""A long-poll's deadline starts from the hold its welcome announces (sans-I/O: envelopes
put where the transport reads them, no socket)."""

from __future__ import annotations

import pytest

from pushwire.client.transports import make_transport
from pushwire.client.transports.poll import ASSUMED_LONGPOLL_TIMEOUT, PollTransport


def poll_transport(name: str) -> PollTransport:
    transport = make_transport(
        name,
        "http://127.0.0.1:9/pushwire",
        ssl_context=None,
        poll_interval=1.0,
        send_timeout=10.0,
        poll_margin=10.0,
    )
    assert isinstance(transport, PollTransport)
    return transport


@pytest.mark.parametrize(
    ("announced", "hold"),
    [("1.5", 1.5), ("0", 0.0), (None, ASSUMED_LONGPOLL_TIMEOUT), ('"x"', ASSUMED_LONGPOLL_TIMEOUT)],
)
async def test_a_longpoll_holds_what_its_welcome_announced(
    announced: str | None, hold: float
) -> None:
    transport = poll_transport("longpoll")
    field = "" if announced is None else f',"longpoll_timeout":{announced}'
    transport.pending.append(f'{{"type":"welcome","session":"s","resume":"r"{field}}}'.encode())
    envelope, _ = await transport.receive()
    assert envelope["type"] == "welcome"
    assert transport.hold == hold


async def test_a_polling_poll_is_held_for_nothing() -> None:
    transport = poll_transport("polling")
    transport.pending.append(b'{"type":"welcome","session":"s","resume":"r","longpoll_timeout":5}')
    await transport.receive()
    assert transport.hold == 0.0
