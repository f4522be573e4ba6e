"""Finding a Redis Cluster's masters and which slots each one holds.

A cluster is named by a URL of seed nodes, `redis+cluster://[user:password@]host:port,host:port`
(`rediss+cluster://` for TLS): any one that answers is asked for the slot map. Every master of
it is reached with the seed's scheme and credentials at the address the cluster gives.

Guaranteed: `discover` returns only a cluster that can serve pushwire: cluster mode on,
`cluster_state:ok`, Redis 7 or later (sharded pub/sub), every one of the 16384 slots held by a
master. Anything else is refused with one line that says what is wrong.

Not guaranteed: the map stays true. The cluster broker reads it again when a master says a
slot moved or is lost (cluster.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from ...errors import ConfigError, Unavailable
from .health import CONNECTION_ERRORS

__all__ = [
    "SCHEMES",
    "SLOTS",
    "Seed",
    "Topology",
    "discover",
    "is_cluster_url",
    "parse_address",
    "parse_url",
]

#: The URL schemes of a Redis Cluster: plain and TLS.
SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: Hash slots of a Redis Cluster (CRC16 of the key's hash tag, modulo this).
SLOTS: Final = 16384
#: The first Redis version with sharded pub/sub (SPUBLISH, SSUBSCRIBE).
_SHARDED_PUBSUB: Final = (7, 0)


@dataclass(frozen=True, slots=True)
class Seed:
    """How to reach the cluster's nodes: the scheme and credentials of the cluster URL
    (`redis` or `rediss`, `user:password@` or ""), the query passed on to each connection,
    and the seed addresses to ask first."""

    scheme: str
    auth: str
    query: str
    addresses: tuple[tuple[str, int], ...]

    def url(self, host: str, port: int) -> str:
        """The `redis://` URL of one node (database 0: a cluster has no other)."""
        name = f"[{host}]" if ":" in host else host
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.auth}{name}:{port}/0{query}"


@dataclass(frozen=True, slots=True)
class Topology:
    """The masters (`host`, `port`) and, for each slot, the index of the master holding it."""

    masters: tuple[tuple[str, int], ...]
    slots: tuple[int, ...]


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://…`)."""
    return url.partition("://")[0] in SCHEMES


def parse_url(url: str) -> Seed:
    """The seeds of `redis+cluster://[user:password@]host[:port][,host[:port]…][/0][?options]`
    (port 6379 when not given; IPv6 addresses in brackets).

    Raises:
        ConfigError: not such a URL, with the reason.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES:
        raise ConfigError(f"a redis cluster URL starts with redis+cluster://, not {url!r}")
    parts = urlsplit(f"redis://{rest}")
    auth, _, hosts = parts.netloc.rpartition("@")
    if parts.path not in ("", "/", "/0"):
        raise ConfigError(f"a redis cluster has database 0 only, not {parts.path!r}")
    addresses: list[tuple[str, int]] = []
    for address in hosts.split(","):
        host, port = parse_address(address)
        addresses.append((host, port))
    return Seed(SCHEMES[scheme], f"{auth}@" if auth else "", parts.query, tuple(addresses))


def parse_address(text: str, what: str = "redis cluster") -> tuple[str, int]:
    """`host[:port]` (port 6379 when not given, IPv6 in brackets).

    Raises:
        ConfigError: no host or a bad port, naming `what` the address is of.
    """
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ConfigError(f"no host in the {what} address {text!r}")
    if not port:
        return host, 6379
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad port in the {what} address {text!r}")
    return host, int(port)


async def discover(seed: Seed, timeout: float) -> Topology:
    """The cluster's masters and slot map, from the first seed address that answers.

    Raises:
        Unavailable: no seed answered, or the cluster is not ready (`cluster_state:fail`).
        ConfigError: the server is not a cluster, is older than Redis 7 (no sharded pub/sub)
            or leaves slots without a master.
    """
    failures: list[str] = []
    for host, port in seed.addresses:
        client = Redis.from_url(
            seed.url(host, port),
            protocol=2,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        try:
            return await _ask(client, f"{host}:{port}", host)
        except CONNECTION_ERRORS as exc:
            failures.append(f"{host}:{port}: {exc}")
        finally:
            await client.aclose()
    raise Unavailable(f"redis cluster unreachable ({'; '.join(failures)})")


async def _ask(client: Redis, where: str, seed_host: str) -> Topology:
    server = await client.info("server")
    version = str(server.get("redis_version", "0"))
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < _SHARDED_PUBSUB:
        raise ConfigError(
            f"redis at {where} is version {version}: the cluster broker needs sharded pub/sub "
            "(SPUBLISH, SSUBSCRIBE), Redis 7.0 or later"
        )
    try:
        info = await client.execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER", "INFO"
        )
    except ResponseError as exc:
        raise ConfigError(
            f"redis at {where} is not a cluster ({exc}): give redis://… for one Redis, "
            "redis+cluster://… for a Redis Cluster"
        ) from exc
    fields = dict(
        line.split(":", 1) for line in _text(info).splitlines() if ":" in line
    )  # cluster_state:ok, cluster_slots_assigned:16384, …
    if fields.get("cluster_state") != "ok":
        raise Unavailable(
            f"redis cluster at {where} is not ready: cluster_state:{fields.get('cluster_state')}"
        )
    ranges = await client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    return _topology(ranges, where, seed_host)


def _topology(ranges: Sequence[Sequence[object]], where: str, seed_host: str) -> Topology:
    """The masters and slot map from CLUSTER SLOTS: `[start, end, [host, port, id, …], …]`."""
    masters: dict[tuple[str, int], int] = {}
    slots = [-1] * SLOTS
    for entry in ranges:
        start, end, master = entry[0], entry[1], entry[2]
        assert isinstance(start, int) and isinstance(end, int)
        assert isinstance(master, list)
        host = _text(master[0])
        if host in ("", "?"):  # the endpoint is unknown: the address we reached
            host = seed_host
        address = (host, int(master[1]))
        index = masters.setdefault(address, len(masters))
        slots[start : end + 1] = [index] * (end + 1 - start)
    missing = slots.count(-1)
    if missing:
        raise ConfigError(
            f"redis cluster at {where} has {missing} of {SLOTS} slots without a master: "
            "assign every slot (redis-cli --cluster fix)"
        )
    return Topology(tuple(masters), tuple(slots))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
