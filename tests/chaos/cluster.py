"""The system under test: a redis-server, two `pushwire serve --broker redis://…` nodes with
their TCP ports and the fault proxies in front of them (the publishers: publishers.py).

Every process here is started by this module and stopped by its PID (`Cluster.close`).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Final

from tests.redis_helpers import RedisServer
from tests.servers import ServerProcess, start_server

from .proxy import FaultProxy

__all__ = ["NODE_SETTINGS", "Cluster", "http_post"]

#: Shorter bounds than the defaults, so that a run recovers from a dead node within seconds
#: (docs/delivery.md lists them): how long a node's liveness lasts, a hand-over waits, a
#: forwarded poll waits.
NODE_SETTINGS: Final = (
    "--set",
    "node_ttl=3",
    "--set",
    "handover_timeout=1",
    "--set",
    "forward_timeout=2",
)
HTTP_TIMEOUT: Final = 3.0


class Node:
    """One `pushwire serve` process; `kill` then `restart` brings it back on the same
    ports (a new process: its sessions are gone)."""

    def __init__(self, redis_url: str, extra: tuple[str, ...]) -> None:
        self.redis_url = redis_url
        self.extra = extra
        self.server: ServerProcess | None = None
        #: The output of every process this node was (restarts included).
        self.output: list[bytes] = []
        self.port = 0
        self.tcp_port = 0

    def start(self) -> None:
        server = start_server(
            "--port",
            str(self.port),
            "--tcp-port",
            str(self.tcp_port),
            "--broker",
            self.redis_url,
            *NODE_SETTINGS,
            *self.extra,
        )
        assert server.tcp_port is not None
        self.server, self.port, self.tcp_port = server, server.port, server.tcp_port
        self.output = [*self.output, b"-- started\n"]
        server.output[:0] = self.output  # one list: the drain thread appends to it
        self.output = server.output

    def kill(self) -> None:
        if self.server is not None:
            self.server.stop(signal.SIGKILL)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()


class Cluster:
    """Redis, two nodes, a faulty proxy for HTTP and one for TCP (the subscribers go
    through them), and a clean one that publishers use (a load balancer that knows which
    node is up)."""

    def __init__(self, directory: Path, *, persistent: bool, seed: int, extra: tuple[str, ...]):
        self.redis = RedisServer(directory, persistent=persistent)
        self.nodes = [Node(self.redis.url, extra) for _ in range(2)]
        self.seed = seed
        self.http: FaultProxy | None = None
        self.tcp: FaultProxy | None = None
        self.clean: FaultProxy | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.redis.start)
        await asyncio.gather(*(asyncio.to_thread(node.start) for node in self.nodes))
        self.http = FaultProxy([("127.0.0.1", n.port) for n in self.nodes], seed=self.seed)
        self.tcp = FaultProxy([("127.0.0.1", n.tcp_port) for n in self.nodes], seed=self.seed + 1)
        self.clean = FaultProxy([("127.0.0.1", n.port) for n in self.nodes])
        for proxy in (self.http, self.tcp, self.clean):
            await proxy.start()

    @property
    def faulty(self) -> tuple[FaultProxy, FaultProxy]:
        assert self.http is not None and self.tcp is not None
        return self.http, self.tcp

    def url(self, transport: str) -> str:
        """Where a subscriber on `transport` connects: through a faulty proxy."""
        http, tcp = self.faulty
        return tcp.url("", "tcp") if transport == "tcp" else http.url("/pushwire")

    async def kill(self, index: int, down_for: float) -> None:
        """SIGKILL node `index`, wait `down_for` seconds, start it again."""
        assert self.clean is not None
        self.clean.take_down(index)
        self.nodes[index].kill()
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.nodes[index].start)
        self.clean.bring_up(index)

    async def restart_redis(self, down_for: float) -> None:
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.redis.start)

    async def close(self) -> None:
        for proxy in (self.http, self.tcp, self.clean):
            if proxy is not None:
                await proxy.stop()
        await asyncio.gather(*(asyncio.to_thread(node.stop) for node in self.nodes))
        await asyncio.to_thread(self.redis.stop)


async def http_post(
    port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A POST to 127.0.0.1:`port` on a connection of its own: status and body. Raises
    OSError or TimeoutError when no complete answer came."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: text/plain",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    async with asyncio.timeout(HTTP_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
            answer = await reader.read()
        finally:
            writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise OSError(f"no answer: {answer[:80]!r}")
    return int(head.split(b" ", 2)[1]), rest
