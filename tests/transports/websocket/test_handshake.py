"""The WebSocket opening handshake without sockets: a request in, a subprotocol or an error
and the 101 answer's exact bytes out."""

from __future__ import annotations

import pytest

from pushwire.errors import BadRequest, Forbidden, MethodNotAllowed, UpgradeRequired
from pushwire.origin import OriginPolicy
from pushwire.transports.websocket.handshake import check_handshake, switching_protocols
from pushwire.web import Request


def upgrade(**headers: str) -> Request:
    base = {
        "host": "example.com",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return Request("GET", "/chat", "", "1.1", list(base.items()), keep_alive=True, upgrade=True)


POLICY = OriginPolicy()


POLICY = OriginPolicy()


def test_the_handshake_answer_is_byte_exact() -> None:
    request = upgrade()
    subprotocol = check_handshake(request, policy=POLICY, subprotocols=["pushwire.v1"])
    assert subprotocol is None
    assert switching_protocols(request, subprotocol) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )


def test_the_server_preference_picks_the_subprotocol() -> None:
    request = upgrade(sec_websocket_protocol="chat, superchat")
    subprotocol = check_handshake(request, policy=POLICY, subprotocols=["superchat", "chat"])
    assert subprotocol == "superchat"
    assert b"\r\nSec-WebSocket-Protocol: superchat\r\n" in switching_protocols(request, subprotocol)


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (
            upgrade(sec_websocket_version="12"),
            UpgradeRequired,
            "unsupported Sec-WebSocket-Version 12",
        ),
        (upgrade(upgrade="h2c"), BadRequest, "missing or invalid Upgrade header"),
        (upgrade(sec_websocket_key="AAAA"), BadRequest, "invalid Sec-WebSocket-Key 'AAAA'"),
        (upgrade(origin="https://evil.example"), Forbidden, "origin 'https://evil.example'"),
    ],
)
def test_bad_handshakes_raise_the_error_of_their_status(
    request_: Request, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_handshake(request_, policy=POLICY, subprotocols=[])


def test_a_post_upgrade_is_not_allowed() -> None:
    request = upgrade()
    request.method = "POST"
    with pytest.raises(MethodNotAllowed):
        check_handshake(request, policy=POLICY, subprotocols=[])
