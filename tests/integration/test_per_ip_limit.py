"""`max_connections_per_ip`: one address cannot hold the server's connections; others (and
/healthz from them) are still answered. 127.0.0.2 plays the attacker, 127.0.0.1 the rest."""

from __future__ import annotations

import http.client
import socket

import pytest

from tests.servers import ServerFactory, ServerProcess

pytestmark = pytest.mark.integration

LIMIT = 3


def _idle(server: ServerProcess, source: str) -> socket.socket:
    return socket.create_connection((server.host, server.port), 10, (source, 0))


def _healthz(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock.recv(65536)


def test_one_address_is_bounded_and_others_are_answered(server_factory: ServerFactory) -> None:
    server = server_factory("--set", f"max_connections_per_ip={LIMIT}")
    held = [_idle(server, "127.0.0.2") for _ in range(LIMIT)]  # at the bound
    assert _healthz(held[-1]).startswith(b"HTTP/1.1 200 ")
    over = _idle(server, "127.0.0.2")  # one over: 503 and closed
    answer = over.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert b"too many connections from one address (> 3)" in answer
    over.close()
    # Another address is served, as many times as the attacker's bound and more.
    for _ in range(LIMIT + 1):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    # A closed connection frees its place.
    held.pop().close()
    again = _idle(server, "127.0.0.2")
    for sock in [again, *held]:
        sock.close()


def test_loopback_is_exempt_only_when_configured(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "max_connections_per_ip=1", "--per-ip-exempt-loopback")
    held = [_idle(server, "127.0.0.2") for _ in range(3)]
    for sock in held:
        assert _healthz(sock).startswith(b"HTTP/1.1 200 ")
        sock.close()
