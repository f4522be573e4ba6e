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


def with_lines(*lines: tuple[str, str]) -> Request:
    """The sample handshake with `lines` added after its own (a header may come twice)."""
    request = upgrade()
    request.headers = [*request.headers, *lines]
    return request


def test_a_headers_lines_count_as_one_comma_separated_list() -> None:
    # RFC 9110 5.3: two lines of a field are one list. The tokens may be in either line.
    request = upgrade(upgrade="h2c", connection="keep-alive")
    request.headers += [("upgrade", "websocket"), ("connection", "Upgrade")]
    request.headers += [
        ("sec-websocket-protocol", "chat"),
        ("sec-websocket-protocol", "pushwire.v1"),
    ]
    assert check_handshake(request, policy=POLICY, subprotocols=["pushwire.v1"]) == "pushwire.v1"
    assert check_handshake(request, policy=POLICY, subprotocols=["chat"]) == "chat"


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        # One key only: a second (even the same) is refused, as a missing one is.
        (
            with_lines(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")),
            BadRequest,
            "missing or repeated Sec-WebSocket-Key",
        ),
        # Version 13 once: "13, 13" is not "13".
        (
            with_lines(("sec-websocket-version", "13")),
            UpgradeRequired,
            "unsupported Sec-WebSocket-Version 13, 13",
        ),
        (upgrade(sec_websocket_key="dGhlIHNhbXBsZSBub25jZQ=\u00e9"), BadRequest, "invalid Sec"),
        (upgrade(sec_websocket_key="dGhlIHNhbXBsZSBub25jZQ"), BadRequest, "invalid Sec"),
        (upgrade(upgrade="websocketx, h2c"), BadRequest, "invalid Upgrade header"),
        (upgrade(connection="keep-alive, upgraded"), BadRequest, "invalid Connection header"),
    ],
)
def test_repeated_or_near_miss_headers_are_refused(
    request_: Request, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_handshake(request_, policy=POLICY, subprotocols=[])
