"""The native server's listening sockets: HTTP (and WebSocket) on one port, the raw TCP
transport on another, and graceful shutdown.

The server knows the app only through the app interface (`pushwire.web.Application`): it
hands it requests, WebSocket upgrades and TCP clients, and imports nothing above it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterable
from typing import cast

from ..clock import LOOP_CLOCK, Clock
from ..config import Config
from ..transports.tcp import TcpConnection
from ..web import Application
from .connection import HttpConnection
from .door import Door, Served
from .wire import Wire

__all__ = ["Server"]

log = logging.getLogger("pushwire.server")


class _TcpAccept(asyncio.Protocol):
    """A new connection on the TCP port: counted, then handed to a `TcpConnection`."""

    __slots__ = ("door", "port")

    def __init__(self, door: Door, port: int) -> None:
        self.door = door
        self.port = port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        door = self.door
        socket_ = cast(asyncio.Transport, transport)
        peer = socket_.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
        connection = TcpConnection(
            socket_,
            config=door.config,
            clock=door.clock,
            policy_file=door.app.flash_policy(self.port),
            on_lost=door.on_closed,
            remote=remote,
        )
        socket_.set_protocol(connection)
        refusal = door.opened(connection, peer[0] if isinstance(peer, tuple) else None)
        if refusal is not None:
            if door.tls is not None:
                # No handshake for a connection over a bound: nothing could be answered.
                connection.closed = True
                socket_.abort()
                return
            connection.close(4000, refusal)
            return
        if door.tls is None:
            connection.start(door.app.tcp_receiver(connection, remote))
            return

        def secured(tls: asyncio.Transport) -> None:
            connection.socket = tls
            connection.start(door.app.tcp_receiver(connection, remote))

        door.handshake(socket_, connection, secured)

    def connection_lost(self, exc: Exception | None) -> None:
        """Never called: the TcpConnection took the socket over in connection_made."""


class Server:
    """Listening sockets, the open connections, and graceful shutdown."""

    def __init__(self, app: Application, config: Config, clock: Clock = LOOP_CLOCK) -> None:
        self.app = app
        self.config = config
        self.door = Door(app, config, clock, self._tls_context())
        self._servers: list[asyncio.base_events.Server] = []
        self.tcp_servers: list[asyncio.base_events.Server] = []
        app.attach_server(self)

    @property
    def accepted(self) -> int:
        """Connections accepted since start."""
        return self.door.accepted

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self.door.connections)

    def consumers(self) -> Iterable[Served]:
        """The open connections, for the memory budget."""
        return self.door.connections

    @property
    def sockets(self) -> list[socket.socket]:
        """The HTTP/WebSocket listening sockets."""
        tcp = set(map(id, self.tcp_servers))
        return [s for server in self._servers if id(server) not in tcp for s in server.sockets]

    async def start(
        self, sock: socket.socket | None = None, *, tcp_sock: socket.socket | None = None
    ) -> None:
        """Listen for HTTP/WebSocket (on `sock`, or host:port), and for TCP clients (on
        `tcp_sock`, or `tcp_port` if set)."""
        loop = asyncio.get_running_loop()
        config, door = self.config, self.door

        # TLS is not the listener's: each connection runs its handshake once counted
        # (`Door.handshake`), so handshakes count against max_connections and header_timeout.
        def connection() -> Wire:
            return Wire(HttpConnection(door))

        if sock is not None:
            server = await loop.create_server(connection, sock=sock, backlog=4096)
        else:
            server = await loop.create_server(connection, config.host, config.port, backlog=4096)
        self._servers.append(server)
        if tcp_sock is not None or config.tcp_port is not None:
            ports: list[int] = []
            if tcp_sock is not None:
                tcp = await loop.create_server(
                    lambda: _TcpAccept(door, ports[0]), sock=tcp_sock, backlog=4096
                )
            else:
                tcp = await loop.create_server(
                    lambda: _TcpAccept(door, ports[0]),
                    config.host,
                    config.tcp_port,
                    backlog=4096,
                )
            ports.append(tcp.sockets[0].getsockname()[1])
            self.tcp_servers.append(tcp)
            self._servers.append(tcp)

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    async def shutdown(self) -> None:
        """Stop accepting, close every connection politely, wait up to `shutdown_timeout`."""
        door = self.door
        door.shutting_down = True
        door.pings.stop()
        door.heartbeats.stop()
        for server in self._servers:
            server.close()
        for connection in list(door.connections):
            connection.shutdown()
        left = await door.drain(self.config.shutdown_timeout)
        if left:
            log.warning("dropping %d connections at shutdown", left)
            for connection in list(door.connections):
                connection.abort()
        for server in self._servers:
            await server.wait_closed()
