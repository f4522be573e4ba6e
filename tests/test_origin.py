"""The Origin policy: which browser origins may talk to pushwire."""

from __future__ import annotations

import pytest

from pushwire.origin import OriginPolicy


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "example.com", True),
        ("http://example.com", "example.com", True),
        ("http://example.com:81", "example.com", False),
        ("http://localhost:5173", "example.com", True),
        ("http://[::1]:8080", "example.com", True),
        ("http://127.0.0.1", "example.com", True),
        ("http://127.0.0.1.evil.example", "example.com", False),
        ("null", "example.com", False),
    ],
)
def test_the_origin_policy(origin: str | None, host: str, allowed: bool) -> None:
    assert OriginPolicy().allows(origin, host) is allowed
