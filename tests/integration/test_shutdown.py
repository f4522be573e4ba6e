"""Graceful shutdown: WebSockets get 1001, a request in flight is answered, exit status 0."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.servers import ServerFactory

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_websockets_get_1001_and_the_process_exits_0(
    server_factory: ServerFactory, sig: signal.Signals
) -> None:
    server = server_factory()
    async with (
        connect(server.ws_url("/ws/room")) as first,
        connect(server.ws_url("/echo")) as second,
    ):
        server.process.send_signal(sig)
        for ws in (first, second):
            with pytest.raises(ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
            assert ws.close_reason == "server shutting down"
    assert await asyncio.to_thread(server.process.wait, 15) == 0


async def test_a_request_in_flight_is_answered_before_exit(server_factory: ServerFactory) -> None:
    server = server_factory()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(
        b"POST /api/publish/room HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nhello"
    )
    async with connect(server.ws_url("/echo")) as ws:
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 10)  # the server is now shutting down
    sock.sendall(b"world")
    response = b""
    while chunk := await asyncio.to_thread(sock.recv, 4096):
        response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in response
    assert b'"offset":1' in response
    sock.close()
    assert await asyncio.to_thread(server.process.wait, 15) == 0


async def test_new_connections_are_refused_during_shutdown(server_factory: ServerFactory) -> None:
    server = server_factory()
    async with connect(server.ws_url("/echo")) as ws:
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 10)
    assert await asyncio.to_thread(server.process.wait, 15) == 0
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()
