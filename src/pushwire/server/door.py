"""What every connection of one server shares (`Door`): the app, the settings, the clock, the
open connections and their bounds (`max_connections`, `max_connections_per_ip`), the
background tasks of their answers, the WebSocket ping sweep and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Final, Protocol, cast

from ..clock import Clock, OneTimer, Timer
from ..config import Config
from ..ratelimit import Networks, address_key, client_address, is_loopback
from ..transports.websocket.connection import PingSweep
from ..web import Application, Request
from .fdlimit import connection_bound
from .stream import HeartbeatSweep
from .tls import secure

__all__ = ["DEFER_TIMEOUTS", "Door", "Served"]

#: Seconds at most a new connection's first timeout waits to be armed (`Door.defer_timeout`);
#: less when a quarter of `keepalive_timeout` is less.
DEFER_TIMEOUTS: Final = 0.1


class Door:
    """What every connection of one server shares: the app, the settings and the clock; the
    open connections (each has `shutdown()` and `abort()`), counted against
    `max_connections` from their first byte (a TLS handshake too); the background tasks of
    their answers; the WebSocket ping sweep; the TLS context, if any."""

    def __init__(
        self,
        app: Application,
        config: Config,
        clock: Clock,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self.tls = tls
        #: `max_connections`, or (0) what the open-file limit allows.
        self.max_connections = connection_bound(config.max_connections, config.fd_reserve)
        #: Open connections per address (an IPv6 one by its /64: `address_key`), when limited.
        self.per_ip: dict[str, int] = {}
        self.ipv6_prefix = config.per_ip_ipv6_prefix
        address_key("::", self.ipv6_prefix)  # a prefix out of range fails at start
        #: Proxies whose X-Forwarded-For is read (`trust_proxy`), and addresses exempt from
        #: the per-address bounds (`limit_exempt`).
        self.trusted = Networks(config.trust_proxy)
        self.trusting = bool(self.trusted)
        self.exempt = Networks(config.limit_exempt)
        self.ip_of: dict[object, str] = {}
        #: The open connections, in a dict used as a set: its entries take about half the
        #: memory of a set's at the same count (~30 bytes a connection against ~50-60).
        self.connections: dict[Served, None] = {}
        self.pings = PingSweep(config, clock, self.connections, self.closed)
        self.heartbeats = HeartbeatSweep(config.heartbeat_interval, clock, self.connections)
        self.accepted = 0  # connections accepted since start
        #: One `pushwire.access` line per HTTP answer (`Config.access_log`, at info level).
        self.access_log = config.access_log and logging.getLogger("pushwire.access").isEnabledFor(
            logging.INFO
        )
        self.shutting_down = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._drained: asyncio.Event | None = None
        #: `closed`, bound once: each open WebSocket keeps it (bound anew, it is 64 bytes a
        #: connection).
        self.on_closed: Callable[[object], None] = self.closed
        #: New connections whose first timeout is not armed yet (`defer_timeout`), the one
        #: timer that arms them, and when the first of them was accepted.
        self._deferred: list[OneTimer] = []
        self._deferred_timer: Timer | None = None
        self._deferred_since = 0.0
        self._defer_for = min(DEFER_TIMEOUTS, config.keepalive_timeout / 4)

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    def opened(self, connection: Served, ip: str | None = None) -> str | None:
        """A connection from `ip` was accepted; why it must be refused (over
        `max_connections` or `max_connections_per_ip`, or shutting down), or None. It counts
        until `closed` either way."""
        self.connections[connection] = None
        self.accepted += 1
        config = self.config
        refusal = None
        if self.shutting_down:
            refusal = "server shutting down"
        elif len(self.connections) > self.max_connections:
            refusal = f"too many connections (> {self.max_connections})"
        limit = config.max_connections_per_ip
        if limit > 0 and ip is not None and not self._unbounded(ip):
            key = address_key(ip, self.ipv6_prefix)
            count = self.per_ip[key] = self.per_ip.get(key, 0) + 1
            self.ip_of[connection] = key
            if count > limit and refusal is None:
                refusal = f"too many connections from one address (> {limit})"
        return refusal

    def _unbounded(self, ip: str) -> bool:
        """Whether connections from `ip` are not bound per address: a trusted proxy (its
        connections carry many clients), an exempt address, or loopback when exempt. (Each
        check parses the address once: `ratelimit.ip_of`, `ratelimit.is_loopback`.)"""
        return (
            ip in self.trusted
            or ip in self.exempt
            or (self.config.per_ip_exempt_loopback and is_loopback(ip))
        )

    def from_client(self, request: Request, peer: str | None, remote: str | None) -> None:
        """Say where `request` comes from (`remote`, `address`): the peer (`peer`, its IP;
        `remote`, ip:port), or behind a trusted proxy the client its X-Forwarded-For names."""
        if peer is None or peer not in self.trusted:
            request.remote, request.address = remote, peer
            return
        address = client_address(peer, request.header_values("x-forwarded-for"), self.trusted)
        request.address = address
        request.remote = remote if address == peer else address

    def closed(self, connection: object) -> None:
        """A connection is gone."""
        self.connections.pop(cast(Served, connection), None)
        ip = self.ip_of.pop(connection, None)
        if ip is not None:
            left = self.per_ip[ip] - 1
            if left:
                self.per_ip[ip] = left
            else:
                del self.per_ip[ip]
        if self._drained is not None and not self.connections:
            self._drained.set()

    def handed_over(self, old: Served, new: Served) -> None:
        """`new` carries on the connection of `old` (a WebSocket after its upgrade)."""
        self.connections.pop(old, None)
        self.connections[new] = None
        ip = self.ip_of.pop(old, None)
        if ip is not None:
            self.ip_of[new] = ip

    def defer_timeout(
        self, connection: OneTimer, delay: float, callback: Callable[[], object]
    ) -> None:
        """`connection` (just accepted) times out `delay` seconds from now: its timer is made
        within `DEFER_TIMEOUTS` seconds, if it still needs one then; a connection whose
        request came meanwhile (a WebSocket handshake, mostly) had no timer to make and
        cancel. One timer and one reading of the clock for all the connections accepted in
        that time: each is timed from the first one's acceptance (at most `DEFER_TIMEOUTS`
        seconds early)."""
        if self._deferred_timer is None:
            self._deferred_since = self.clock.time()
            self._deferred_timer = self.clock.call_later(self._defer_for, self._arm_deferred)
        connection.defer_timer(self._deferred_since + delay, callback)
        self._deferred.append(connection)

    def _arm_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        self._deferred_timer = None
        for connection in deferred:
            connection.arm_deferred()

    def track(self, task: asyncio.Future[None]) -> None:
        """Keep a background task alive until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def handshake(
        self,
        socket: asyncio.Transport,
        protocol: asyncio.Protocol,
        then: Callable[[asyncio.Transport], object],
    ) -> None:
        """TLS on a counted connection: `then(tls_transport)` once the handshake is done,
        within `header_timeout`, and `protocol` gets the connection's events from then on; a
        handshake that fails or stalls drops the connection (`protocol.connection_lost`).
        asyncio's own TLS listener would run it outside `max_connections`, for up to 60 s.

        """
        assert self.tls is not None
        secure(socket, protocol, then, self.tls, self.config.header_timeout)

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for every connection to close; how many are left."""
        if self.connections:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        return len(self.connections)


class Served(Protocol):
    """A connection a server keeps track of (HTTP, WebSocket, TCP)."""

    def shutdown(self) -> None:
        """Close politely: what is in flight finishes, clients are told to come back."""

    def abort(self) -> None:
        """Drop the connection now."""

    def buffered(self) -> int:
        """Bytes held for or from the client now (pushwire.core.budget)."""

    def shed(self, reason: str) -> None:
        """Close for the memory budget (4001, or 503 outside a stream)."""
