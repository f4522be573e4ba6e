"""The retry policy and the idempotency key rules, without a server."""

from __future__ import annotations

import pytest

from pushwire.client.retry import RetryPolicy
from pushwire.errors import BadRequest
from pushwire.message import MAX_IDEMPOTENCY_KEY, check_idempotency_key


def test_backoff_is_jittered_under_an_exponential_bound_capped_at_delay_max() -> None:
    policy = RetryPolicy(attempts=5, delay=0.5, delay_max=2.0)
    for failed, bound in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 2.0)):
        waits = [policy.backoff(failed) for _ in range(200)]
        assert all(0 <= wait <= bound for wait in waits)
        assert max(waits) > bound / 2  # spread over the range, not fixed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "attempts must be >= 1, not 0"),
        ({"delay": 0}, "need 0 < delay <= delay_max, not 0, 10.0"),
        ({"delay": 3, "delay_max": 2}, "need 0 < delay <= delay_max, not 3, 2"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_an_idempotency_key_of_the_longest_length_is_valid_and_one_more_is_not() -> None:
    assert check_idempotency_key("a" * MAX_IDEMPOTENCY_KEY) == "a" * MAX_IDEMPOTENCY_KEY
    with pytest.raises(BadRequest) as raised:
        check_idempotency_key("a" * (MAX_IDEMPOTENCY_KEY + 1))
    assert str(raised.value) == "idempotency key must be 1 to 100 characters, not 101"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "idempotency key must be 1 to 100 characters, not 0"),
        ("secret key", "idempotency key may hold only A-Z a-z 0-9 _ . : -"),
        (42, "idempotency key must be a string, not int"),
    ],
)
def test_an_invalid_idempotency_key_is_refused_without_quoting_it(
    key: object, message: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        check_idempotency_key(key)
    assert str(raised.value) == message
    assert check_idempotency_key(None) is None
