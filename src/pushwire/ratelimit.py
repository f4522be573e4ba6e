"""Rates and addresses: token buckets, and which address a request comes from.

Pure: no clock read (each call passes `now`), no socket. A bucket holds up to `burst`
tokens and gains `rate` a second; taking one is a few arithmetic operations, so a bucket can
sit on a per-message path. `Networks` is a list of addresses and CIDR blocks (trusted
proxies, the exempt allow-list); `client_address` is the address a request comes from once
the `X-Forwarded-For` of trusted proxies is read.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from typing import Final

from .config import Config

__all__ = [
    "AddressBuckets",
    "MessageRate",
    "Networks",
    "RatePolicy",
    "TokenBucket",
    "address_key",
    "client_address",
    "ip_of",
    "is_loopback",
]

#: Buckets an `AddressBuckets` keeps before it forgets the full ones (a full bucket is the
#: same as a new one, so forgetting it changes nothing).
MAX_ADDRESSES: Final = 100_000

#: Addresses of one `X-Forwarded-For` read at most, from the right (a longer chain is cut:
#: only its rightmost entries can have been written by a trusted proxy).
MAX_FORWARDED: Final = 32


#: Addresses whose parse `ip_of` keeps (a connection's checks ask several times for its
#: address; a busy server sees the same ones again).
PARSED_ADDRESSES: Final = 4096


@functools.lru_cache(maxsize=PARSED_ADDRESSES)
def ip_of(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`address` parsed, or None when it is not an IP address (a Unix socket's peer).
    `ipaddress` takes microseconds a parse, and every connection asked it several times
    (its door's per-address bound, its handshake's rate, its session's bound)."""
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


@functools.lru_cache(maxsize=PARSED_ADDRESSES)
def is_loopback(address: str) -> bool:
    """Whether `address` is a loopback address (False when it is not an address)."""
    ip = ip_of(address)
    return ip is not None and ip.is_loopback


def address_key(address: str, ipv6_prefix: int = 64) -> str:
    """The key one client's per-address counters are kept under: an IPv4 address as it is;
    an IPv6 address by its network of `ipv6_prefix` bits (`2001:db8:1:2::/64`: whoever holds
    a /64 holds all of it), an IPv4-mapped one (`::ffff:192.0.2.1`) as its IPv4 address.
    Not an address (a Unix socket's peer): as it is.

    Raises:
        ValueError: `ipv6_prefix` not from 1 to 128 (`Config.per_ip_ipv6_prefix`).
    """
    if ":" not in address:  # IPv4, the common case: no parsing
        return address
    return _ipv6_key(address, ipv6_prefix)


@functools.lru_cache(maxsize=4096)
def _ipv6_key(address: str, prefix: int) -> str:
    if not 1 <= prefix <= 128:
        raise ValueError(f"per_ip_ipv6_prefix must be from 1 to 128, not {prefix}")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    if prefix == 128:
        return str(ip)  # the zone id (`%eth0`), if any, kept: another link's address
    return str(ipaddress.IPv6Network((int(ip), prefix), strict=False))


class TokenBucket:
    """Up to `burst` tokens, `rate` more each second; `take` spends them."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend `amount` tokens if there are that many now; whether there were."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True

    def wait(self, amount: float = 1.0) -> float:
        """Seconds until `amount` tokens are there (as of the last `take`); at least 0."""
        missing = min(amount, self.burst) - self.tokens
        return max(0.0, missing / self.rate) if self.rate > 0 else float("inf")

    def full(self, now: float) -> bool:
        """Whether the bucket would be full now (a new one would be the same)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class RatePolicy:
    """The sessions' rates, shared by every session's `MessageRate` (a session keeps only its
    tokens): `messages_per_second` (bursts of `message_burst`) and `bytes_per_second`
    (bursts of `byte_burst`, at least `max_message`: any message can pass); either may be
    off (0), a bucket that is always full (infinite tokens). `time`: the clock's time
    (`clock.time_reader`)."""

    __slots__ = ("byte_burst", "byte_rate", "config", "message_burst", "message_rate", "time")

    def __init__(self, config: Config, time: Callable[[], float]) -> None:
        self.config = config
        self.time = time
        infinite = float("inf")
        on = config.messages_per_second > 0
        self.message_rate = config.messages_per_second if on else 0.0
        self.message_burst = float(max(1, config.message_burst)) if on else infinite
        on = config.bytes_per_second > 0
        self.byte_rate = config.bytes_per_second if on else 0.0
        self.byte_burst = float(max(config.byte_burst, config.max_message)) if on else infinite


class MessageRate:
    """A session's tokens under its server's `RatePolicy`. `strikes`: messages refused since
    the last one let through.

    Two token buckets sharing one time stamp, inlined: `allow` runs once per message a client
    sends. The rates live on the shared policy: a session holds its two token counts and a
    time stamp (an object of 6 slots where one with the rates was 11, every pushwire.v1
    client having one from its hello on).
    """

    __slots__ = ("_short", "bytes", "messages", "policy", "stamp", "strikes")

    def __init__(self, policy: RatePolicy) -> None:
        self.policy = policy
        # Full at time 0: the first `allow` fills them (a clock's time is at least 0).
        self.messages = policy.message_burst
        self.bytes = policy.byte_burst
        self.stamp = 0.0
        self.strikes = 0
        self._short = 0.0  # what the last refused message lacked: 0 a message token, else bytes

    def allow(self, size: int) -> bool:
        """Whether a message of `size` bytes may pass now (its tokens are spent if so)."""
        policy = self.policy
        now = policy.time()
        elapsed = now - self.stamp
        self.stamp = now
        messages = self.messages + elapsed * policy.message_rate
        if messages > policy.message_burst:
            messages = policy.message_burst
        sizes = self.bytes + elapsed * policy.byte_rate
        if sizes > policy.byte_burst:
            sizes = policy.byte_burst
        if messages < 1.0 or sizes < size:
            self.messages, self.bytes = messages, sizes
            self.strikes += 1
            self._short = 0.0 if messages < 1.0 else size - sizes
            return False
        self.messages, self.bytes = messages - 1.0, sizes - size
        if self.strikes:
            self.strikes = 0
        return True

    def refusal(self) -> str:
        """Why the last message was refused."""
        config = self.policy.config
        if self._short == 0.0:
            return f"rate limited (over {config.messages_per_second:g} messages/s)"
        return f"rate limited (over {config.bytes_per_second:g} bytes/s)"

    def wait(self) -> float:
        """Seconds until the last refused message would pass."""
        policy = self.policy
        if self._short == 0.0:
            rate = policy.message_rate
            return (1.0 - self.messages) / rate if rate else 0.0
        return self._short / policy.byte_rate if policy.byte_rate else 0.0


class AddressBuckets:
    """A `TokenBucket` per address, made when first asked for; bounded: over
    `MAX_ADDRESSES` the full buckets are forgotten (a new one is full too)."""

    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, address: str, now: float) -> float:
        """Spend one token of `address`; 0 when there was one, else the seconds to wait."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= MAX_ADDRESSES:
                self._forget_full(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        if bucket.take(now):
            return 0.0
        return bucket.wait()

    def _forget_full(self, now: float) -> None:
        for address in [a for a, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)


class Networks:
    """Addresses and CIDR blocks (`10.0.0.0/8`, `::1`); `in` tells an address in one of them.
    Not an address (say, a Unix socket's peer) is in none.

    Raises:
        ValueError: an entry that is neither an address nor a network.
    """

    __slots__ = ("_networks",)

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not self._networks or not isinstance(address, str):
            return False
        ip = ip_of(address)
        return ip is not None and any(ip in network for network in self._networks)


def client_address(peer: str, forwarded: Iterable[str], trusted: Networks) -> str:
    """The address a request comes from: `peer` (the socket's), unless `peer` is a trusted
    proxy; then the rightmost address of `X-Forwarded-For` (`forwarded`: its values in wire
    order) that is not a trusted proxy, as nginx's `real_ip_recursive` reads it. Entries that
    are not addresses stop the walk (what is left of them was written by the client)."""
    if peer not in trusted:
        return peer
    entries = [entry.strip() for value in forwarded for entry in value.split(",")]
    client = peer
    for entry in reversed(entries[-MAX_FORWARDED:]):
        try:
            address = str(ipaddress.ip_address(entry))
        except ValueError:
            break
        client = address
        if address not in trusted:
            break
    return client
