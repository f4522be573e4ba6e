"""Refusals are logged once each, and a flood of them is counted, not written out."""

from __future__ import annotations

import logging

import pytest

from pushwire.auth.refusals import RefusalLog
from pushwire.clock import ManualClock
from pushwire.errors import Forbidden, Unauthorized


def test_a_burst_is_logged_then_one_a_second_and_the_rest_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1000.0)
    refusals = RefusalLog(clock, burst=3, per_second=1.0)
    with caplog.at_level(logging.WARNING, logger="pushwire.auth"):
        for index in range(10):
            refusals.refused("connect", Forbidden(f"no {index}"), "127.0.0.1:5000")
        assert [r.getMessage() for r in caplog.records] == [
            "refused connect from 127.0.0.1:5000: no 0",
            "refused connect from 127.0.0.1:5000: no 1",
            "refused connect from 127.0.0.1:5000: no 2",
        ]
        clock.advance(1.0)
        refusals.refused("subscribe to 'x'", Unauthorized("invalid token: bad signature"), None)
    assert [r.getMessage() for r in caplog.records][3:] == [
        "7 more refusals were not logged (too many)",
        "refused subscribe to 'x' from ?: invalid token: bad signature",
    ]
    assert refusals.count == 11 and refusals.suppressed == 0
