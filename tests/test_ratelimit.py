"""Token buckets, address lists and X-Forwarded-For (pushwire.ratelimit): at each bound and
one over, on a time the test sets."""

from __future__ import annotations

import pytest

from pushwire.clock import ManualClock
from pushwire.config import Config
from pushwire.core.admission import Admission
from pushwire.ratelimit import (
    AddressBuckets,
    MessageRate,
    Networks,
    RatePolicy,
    TokenBucket,
    address_key,
    client_address,
)


def test_bucket_lets_a_burst_through_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, True]  # at the bound
    assert not bucket.take(100.0)  # one over
    assert bucket.wait() == pytest.approx(0.5)
    assert not bucket.take(100.4)
    assert bucket.take(100.5)  # one token back after 1/rate seconds
    assert bucket.take(200.0) and bucket.take(200.0) and bucket.take(200.0)
    assert not bucket.take(200.0)  # never more than the burst, however long it waited


def test_bucket_takes_amounts() -> None:
    bucket = TokenBucket(rate=10.0, burst=100, now=0.0)
    assert bucket.take(0.0, 100)
    assert not bucket.take(0.0, 1)
    assert not bucket.take(5.0, 51)
    assert bucket.take(5.0, 50)


def test_address_buckets_are_apart() -> None:
    buckets = AddressBuckets(rate=1.0, burst=2)
    assert buckets.take("10.0.0.1", 0.0) == 0.0
    assert buckets.take("10.0.0.1", 0.0) == 0.0
    assert buckets.take("10.0.0.1", 0.0) == pytest.approx(1.0)  # over: wait a second
    assert buckets.take("10.0.0.2", 0.0) == 0.0  # another address has its own


def test_address_buckets_forget_full_ones_when_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pushwire.ratelimit.MAX_ADDRESSES", 3)
    buckets = AddressBuckets(rate=1.0, burst=1)
    for address in ("a", "b", "c"):
        buckets.take(address, 0.0)
    buckets.take("d", 10.0)  # a, b and c are full again by now: forgotten
    assert len(buckets) == 1


def test_message_rate_counts_messages_and_bytes() -> None:
    config = Config(
        messages_per_second=1.0,
        message_burst=2,
        bytes_per_second=10.0,
        byte_burst=100,
        max_message=100,
    )
    clock = ManualClock(50.0)
    rate = MessageRate(RatePolicy(config, clock.time))
    assert rate.allow(10) and rate.allow(10)  # two messages: the burst
    assert not rate.allow(10)
    assert rate.strikes == 1
    assert "messages/s" in rate.refusal()
    assert rate.wait() == pytest.approx(1.0)
    clock.advance(1.0)
    assert rate.allow(80)  # a message back; 100 - 20 + 10 - 80: 10 bytes left
    assert rate.strikes == 0
    clock.advance(2.0)
    assert not rate.allow(31)  # two messages back, 10 + 20 bytes only
    assert "bytes/s" in rate.refusal()
    assert rate.wait() == pytest.approx(0.1)
    assert rate.allow(30)  # the refused message's token was not spent


def test_byte_burst_is_at_least_one_message() -> None:
    config = Config(bytes_per_second=1.0, byte_burst=10, max_message=1000)
    rate = MessageRate(RatePolicy(config, lambda: 0.0))
    assert rate.allow(1000)


def test_networks_take_addresses_and_blocks() -> None:
    networks = Networks(["10.0.0.0/8", "::1", " 192.168.1.7 "])
    assert "10.1.2.3" in networks
    assert "::1" in networks
    assert "192.168.1.7" in networks
    assert "192.168.1.8" not in networks
    assert "not an address" not in networks
    assert "10.1.2.3" not in Networks()
    with pytest.raises(ValueError):
        Networks(["10.0.0.300"])


TRUSTED = Networks(["127.0.0.2", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # An untrusted peer's header is ignored: anyone can write one.
        ("127.0.0.1", ["203.0.113.9"], "127.0.0.1"),
        ("127.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        # The rightmost address that is not a trusted proxy: what the client wrote is left.
        ("127.0.0.2", ["1.2.3.4, 203.0.113.9, 10.0.0.5"], "203.0.113.9"),
        ("127.0.0.2", ["1.2.3.4", "203.0.113.9, 10.0.0.5"], "203.0.113.9"),
        # Only trusted proxies in it: the leftmost of them.
        ("127.0.0.2", ["10.0.0.7, 10.0.0.5"], "10.0.0.7"),
        # No header, or garbage: the peer (the last address that is sure).
        ("127.0.0.2", [], "127.0.0.2"),
        ("127.0.0.2", ["garbage"], "127.0.0.2"),
        ("127.0.0.2", ["203.0.113.9, garbage, 10.0.0.5"], "10.0.0.5"),
        ("127.0.0.2", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),  # IPv4: the address
        ("::1", 64, "::/64"),
        ("::1", 128, "::1"),
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", 64, "2001:db8:1:2::/64"),  # the same /64: the same client
        ("2001:db8:1:3::9", 64, "2001:db8:1:3::/64"),  # the next /64: another
        ("2001:db8:1:2::9", 48, "2001:db8:1::/48"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # IPv4-mapped: as the IPv4 address
        ("unix:/run/pw.sock", 64, "unix:/run/pw.sock"),  # not an address: as it is
    ],
)
def test_address_key_counts_ipv6_by_its_prefix(address: str, prefix: int, key: str) -> None:
    assert address_key(address, prefix) == key


@pytest.mark.parametrize("prefix", [0, 129])
def test_address_key_refuses_a_prefix_out_of_range(prefix: int) -> None:
    with pytest.raises(ValueError, match="per_ip_ipv6_prefix"):
        address_key("::1", prefix)


def test_sessions_share_their_server_s_rates() -> None:
    config = Config(messages_per_second=1.0, message_burst=1)
    admission = Admission(config, ManualClock(5.0))
    policy = admission.rates()
    assert admission.rates() is policy  # one policy for every session of the server
    first, second = MessageRate(policy), MessageRate(policy)
    assert first.allow(1) and not first.allow(1)
    assert second.allow(1)  # each session has its own tokens
