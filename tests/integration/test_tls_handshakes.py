"""TLS handshakes count against `max_connections` and must finish within `header_timeout`:
silent TCP connections to a TLS port cannot hold the server's connections for long."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import TcpClient

pytestmark = pytest.mark.integration

BOUND = 4
HEADER_TIMEOUT = 2.0


def _silent(server: ServerProcess, port: int) -> socket.socket:
    """A TCP connection that never starts its TLS handshake."""
    return socket.create_connection((server.host, port), timeout=HEADER_TIMEOUT + 5)


def _ended_by_server(sock: socket.socket) -> float:
    """Seconds until the server ends the connection (it sends nothing before)."""
    start = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(1) == b""
    return time.monotonic() - start


def _healthz(server: ServerProcess, context: ssl.SSLContext) -> int:
    """`GET /healthz` over TLS, retried for up to 2 s while the server refuses it."""
    deadline = time.monotonic() + 2
    while True:
        conn = http.client.HTTPSConnection(server.host, server.port, timeout=10, context=context)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        except (ssl.SSLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()


@pytest.mark.parametrize("door", ["http", "tcp"])
def test_silent_tls_connections_count_and_are_dropped_after_header_timeout(
    server_factory: ServerFactory, certificate: tuple[Path, Path], door: str
) -> None:
    cert, key = certificate
    server = server_factory(
        "--tcp-port",
        "0",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--set",
        f"max_connections={BOUND}",
        "--set",
        f"header_timeout={HEADER_TIMEOUT}",
    )
    port = server.port if door == "http" else server.tcp_port
    assert port is not None
    held = [_silent(server, port) for _ in range(BOUND)]  # at the bound: all held
    time.sleep(0.2)  # let the server accept them all (nothing to await on a silent socket)
    over = _silent(server, port)  # one over: dropped at once, no handshake
    assert _ended_by_server(over) < 1.0
    over.close()
    # The held ones are dropped once header_timeout passes with no handshake.
    for sock in held:
        assert _ended_by_server(sock) < HEADER_TIMEOUT + 2
        sock.close()
    # Then real clients get in again, on both doors (once the server has counted the
    # dropped ones out, a moment after their peers saw the end).
    context = ssl.create_default_context(cafile=str(cert))
    assert _healthz(server, context) == 200
    client = TcpClient(server, wrap=context)
    assert client.hello()["transport"] == "tcp"
    client.close()


def test_a_tls_client_within_the_bound_is_served(
    server_factory: ServerFactory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = server_factory(
        "--tls-cert", str(cert), "--tls-key", str(key), "--set", f"max_connections={BOUND}"
    )
    held = [_silent(server, server.port) for _ in range(BOUND - 1)]
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection(server.host, server.port, timeout=10, context=context)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    for sock in held:
        sock.close()
