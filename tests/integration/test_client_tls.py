"""The Python client on a secure URL speaks TLS on every transport, also when the app passes
no `ssl_context` (it used to speak plain HTTP then, for every transport but WebSocket): the
system's default context, here trusting the test's certificate through SSL_CERT_FILE."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushwire.client import Message, connect
from tests.servers import ServerFactory


@pytest.mark.parametrize("transport", ["websocket", "sse", "stream", "longpoll", "polling", "tcp"])
async def test_a_secure_url_without_a_context_is_tls_verified_by_default(
    server_factory: ServerFactory,
    certificate: tuple[Path, Path],
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = certificate
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key), "--tcp-port", "0")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by ssl.create_default_context()
    url = (
        f"tcps://127.0.0.1:{server.tcp_port}"
        if transport == "tcp"
        else f"https://127.0.0.1:{server.port}/pushwire"
    )
    async with connect(url, transports=[transport], connect_timeout=20) as client:
        await client.subscribe("secure")
        await client.publish("secure", "over TLS")
        message = await client.recv()
    assert isinstance(message, Message) and message.data == "over TLS"
