"""When the client refreshes a token: about 80% into the time it has left, at least 1 s
before it expires, at once when that is already past."""

from __future__ import annotations

import pytest

from pushwire.client.refresh import refresh_delay


@pytest.mark.parametrize(
    ("left", "delay"),
    [
        (600.0, 480.0),  # 80% of ten minutes
        (5.0, 4.0),  # 80% leaves exactly the 1 s margin
        (4.0, 3.0),  # 80% would leave less than 1 s: 1 s before
        (2.0, 1.0),
        (1.0, 0.0),  # the margin is all there is: at once
        (0.5, 0.0),
        (-3.0, 0.0),  # expired already
    ],
)
def test_a_token_is_refreshed_at_80_percent_of_its_time_and_a_second_before_the_end(
    left: float, delay: float
) -> None:
    assert refresh_delay(1_700_000_000.0 + left, 1_700_000_000.0) == pytest.approx(delay)
