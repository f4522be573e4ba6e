"""The client's HTTP transports go through the HTTP proxy the environment names (`HTTP_PROXY`,
`ALL_PROXY`, in a `CONNECT` tunnel), unless `NO_PROXY` exempts the host; a proxy that refuses
the tunnel is a failed connection. The proxy here is a real one, on a real socket."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from pushwire.client import ClientClosed, Message, connect
from tests.servers import ServerProcess

pytestmark = pytest.mark.integration

WAIT = 10.0


class TunnelProxy:
    """A minimal HTTP proxy that only opens `CONNECT` tunnels, and remembers each request
    head it was sent (or refuses every tunnel with `refuse`, e.g. 407)."""

    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.heads: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.heads.append(head)
            if self.refuse is not None:
                writer.write(f"HTTP/1.1 {self.refuse} No\r\nContent-Length: 0\r\n\r\n".encode())
                return
            host, _, port = head.split(" ")[1].rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

            async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
                sink.close()

            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a side hung up: the tunnel ends
        finally:
            writer.close()
            self._tasks.discard(task)


@pytest.fixture
async def proxy() -> AsyncIterator[TunnelProxy]:
    proxy = TunnelProxy()
    await proxy.start()
    yield proxy
    await proxy.stop()


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.parametrize("transport", ["sse", "stream", "longpoll", "polling"])
async def test_the_http_transports_go_through_the_proxy_the_environment_names(
    server: ServerProcess, proxy: TunnelProxy, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
    url = server.url("/pushwire")
    async with connect(url, transports=[transport], poll_interval=0.05) as client:
        await client.subscribe("room")
        await client.publish("room", "through the proxy")
        message = await asyncio.wait_for(client.recv(), WAIT)
    assert isinstance(message, Message) and message.data == "through the proxy"
    target = f"{server.host}:{server.port}"
    assert proxy.heads, "the proxy saw nothing"
    secret = base64.b64encode(b"user:p@ss").decode()
    for head in proxy.heads:
        assert head.startswith(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"), head
        assert f"\r\nProxy-Authorization: Basic {secret}\r\n" in head


async def test_no_proxy_exempts_a_host_and_all_proxy_is_used_too(
    server: ServerProcess, proxy: TunnelProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", server.host)
    async with connect(server.url("/pushwire"), transports=["longpoll"]) as client:
        await client.publish("room", "direct")
    assert proxy.heads == []
    monkeypatch.delenv("NO_PROXY")
    async with connect(server.url("/pushwire"), transports=["longpoll"]) as client:
        await client.publish("room", "proxied")
    assert proxy.heads and proxy.heads[0].startswith("CONNECT ")


async def test_a_proxy_that_refuses_the_tunnel_fails_the_connection(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = TunnelProxy(refuse=407)
    await refusing.start()
    try:
        clear_proxy_environment(monkeypatch)
        monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{refusing.port}")  # no scheme: http
        with pytest.raises(ClientClosed) as closed:
            await connect(
                server.url("/pushwire"), transports=["sse"], reconnect=False, connect_timeout=5
            )
        assert closed.value.code == 1006
        assert f"CONNECT {server.host}:{server.port} answered b'407'" in str(closed.value)
        assert len(refusing.heads) == 1
    finally:
        await refusing.stop()
