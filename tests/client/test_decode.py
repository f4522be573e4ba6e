"""What the text transports make of a line from the server that is not an envelope."""

from __future__ import annotations

import pytest

from pushwire.client.errors import ConnectionLost
from pushwire.client.transports.base import decode_text


@pytest.mark.parametrize("line", [b'{"type":"message","da', b"\xff\xfe", b"[1]", b'{"a":1}'])
def test_a_line_that_is_not_an_envelope_is_a_lost_connection_not_a_crash(line: bytes) -> None:
    with pytest.raises(ConnectionLost) as raised:
        decode_text(line)
    assert raised.value.code == 4100


def test_an_envelope_is_read() -> None:
    assert decode_text(b'{"type":"ping"}') == ({"type": "ping"}, None)
