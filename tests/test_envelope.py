"""pushwire.v1 envelopes: decoding every data form, refusing malformed ones."""

from __future__ import annotations

import pytest

from pushwire.envelope import Envelope, decode, encode_binary_frame_payload, encode_text
from pushwire.errors import BadRequest


def test_text_data_binary_frames_and_data64_decode_to_the_same_kinds() -> None:
    assert decode('{"type":"send","data":"hi"}') == Envelope(
        "send", {"type": "send", "data": "hi"}, "hi"
    )
    assert decode('{"type":"send","data64":"AP8="}').data == b"\x00\xff"
    assert decode(b'{"type":"send"}\n\x00\n\xff').data == b"\x00\n\xff"
    assert decode('{"type":"ping"}').data is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "envelope is not valid JSON"),
        ("[1, 2]", "envelope must be a JSON object"),
        ('{"data": "x"}', 'envelope has no string "type"'),
        ('{"type": "send", "data": 5}', '"data" must be a string'),
        ('{"type": "send", "data64": "%%%"}', '"data64" is not valid base64'),
        # Found by tests/fuzz: a character that is not ASCII raised ValueError, uncaught.
        ('{"type": "send", "data64": "\u0080"}', '"data64" is not valid base64'),
        ('{"type": "send", "data64": "AP8é"}', '"data64" is not valid base64'),
        (b'{"type": "send"}', "binary envelope without the newline"),
    ],
)
def test_malformed_envelopes_are_bad_requests(frame: str | bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode(frame)


def test_encoding_round_trips() -> None:
    assert decode(encode_text({"type": "message"}, b"\x01").decode()).data == b"\x01"
    assert decode(encode_text({"type": "message"}, "é").decode()).data == "é"
    assert decode(encode_binary_frame_payload({"type": "message"}, b"\n\n")).data == b"\n\n"
