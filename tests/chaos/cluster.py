"""The system under test: a redis-server, two `pushwire serve --broker redis://…` nodes with
their TCP ports, the fault proxies in front of them, and publishers that number what they
publish.

Every process here is started by this module and stopped by its PID (`Cluster.close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Final

from pushwire.client import Client, ClientError
from tests.redis_helpers import RedisServer
from tests.servers import ServerProcess, start_server

from .ledger import PublishLog
from .proxy import FaultProxy

__all__ = ["NODE_SETTINGS", "Cluster", "DirectPublisher", "EnvelopePublisher", "HttpPublisher"]

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


class _Paced:
    """A publisher's loop: one publish every 1/`rate` seconds (catching up when late),
    until `stop` or `count` publishes."""

    prefix = "?"

    def __init__(self, log: PublishLog, channel: str, rate: float) -> None:
        self.name = self.prefix
        self.log = log
        self.channel = channel
        self.rate = rate
        self.stop = asyncio.Event()
        self.attempts = 0
        self.confirmed = 0

    async def run(self, count: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self.stop.is_set() and (count is None or self.attempts < count):
            message_id = f"{self.name}{self.attempts}"
            self.attempts += 1
            self.log.sent(message_id, time.time())
            position = await self.publish(message_id)
            if position is not None:
                self.confirmed += 1
                self.log.placed(message_id, position, time.time())
            next_at += 1 / self.rate
            delay = next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stop.wait()
            else:
                next_at = loop.time()  # late: no burst to catch up

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        raise NotImplementedError


class HttpPublisher(_Paced):
    """`POST /api/publish/<channel>`, each on a new connection through the clean proxy."""

    prefix = "h"

    def __init__(self, log: PublishLog, channel: str, rate: float, proxy: FaultProxy) -> None:
        super().__init__(log, channel, rate)
        self.proxy = proxy

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        try:
            status, body = await http_post(
                self.proxy.port, f"/api/publish/{self.channel}", message_id.encode()
            )
        except (OSError, TimeoutError):
            return None
        if status != 200:
            return None
        answer = json.loads(body)
        return str(answer["epoch"]), int(answer["offset"])


class EnvelopePublisher(_Paced):
    """The `publish` envelope, from a Python client on a WebSocket through the clean
    proxy (it reconnects when its node dies)."""

    prefix = "e"

    def __init__(self, log: PublishLog, channel: str, rate: float, proxy: FaultProxy) -> None:
        super().__init__(log, channel, rate)
        self.client = Client(
            proxy.url("/pushwire"),
            transports=["websocket"],
            reconnect_delay=0.05,
            reconnect_delay_max=0.5,
            request_timeout=HTTP_TIMEOUT,
            connect_timeout=HTTP_TIMEOUT,
        )

    async def open(self) -> None:
        await self.client.open()

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        try:
            return await self.client.publish(self.channel, message_id)
        except ClientError:
            return None

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, ClientError):
            async with asyncio.timeout(5):
                await self.client.close()


class DirectPublisher(_Paced):
    """`POST /api/send/<user>` to each user in turn, each user's sends and their places in
    its inbox (the answer's `epoch` and `offset`) kept in that user's log."""

    prefix = "d"

    def __init__(self, logs: dict[str, PublishLog], rate: float, proxy: FaultProxy) -> None:
        super().__init__(PublishLog(), "", rate)
        self.proxy = proxy
        self.logs = logs
        self.users = list(logs)

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        user = self.users[self.attempts % len(self.users)]
        log = self.logs[user]
        log.sent(message_id, time.time())
        try:
            path = f"/api/send/{user}"
            status, body = await http_post(self.proxy.port, path, message_id.encode())
        except (OSError, TimeoutError):
            return None
        if status == 200:
            answer = json.loads(body)
            log.placed(message_id, (str(answer["epoch"]), int(answer["offset"])), time.time())
            self.confirmed += 1
        return None
