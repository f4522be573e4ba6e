"""Testing against a real `redis-server`: one on a free loopback port, stopped by PID; started
`RedisBroker`s on it, closed at the end of the test; nodes that record what their broker
delivered. The fixtures are in tests/conftest.py (`redis_server`) and
tests/broker/redis/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

import pytest
from redis.asyncio import Redis

from pushwire.broker.redis import RedisBroker
from pushwire.errors import PushwireError
from pushwire.message import Data, Message

REDIS_SERVER = shutil.which("redis-server")

RECONNECT_MIN: float = 0.05  # quick reconnects: a restarted redis-server is found again soon
RECONNECT_MAX: float = 0.5
WAIT: float = 10.0  # bound on every wait for something to arrive, and on each broker's close

T = TypeVar("T")
Maker = Callable[..., Awaitable[T]]  # make(**options) -> a started broker, wrapped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One `redis-server`; `stop` then `start` is a restart on the same port. Without
    `persistent` the restart loses every key; with it, every write is in the append-only
    file before Redis answers it (appendfsync always), and a restart keeps everything."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.port = _free_port()
        self.directory = directory
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        #: More `redis-server` arguments (a cluster node's: tests/redis_cluster_helpers.py).
        self.arguments: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert REDIS_SERVER is not None
        assert self.process is None, "already running"
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.persistent:
            arguments += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            arguments += ["--appendonly", "no"]
        arguments += ["--dir", str(self.directory), *self.arguments]
        self.process = subprocess.Popen(
            [REDIS_SERVER, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextlib.contextmanager
def running_redis(directory: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """A started `RedisServer`, stopped on the way out (skips the test if not installed)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer(directory, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Watched:
    """Something that callbacks change and a test waits on: a callback calls `changed()`,
    the test awaits `until(condition)`, which checks the condition again after each change."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


class RedisBrokers:
    """Makes started `RedisBroker`s on one redis-server and closes every one of them at the end.

    `await brokers(**options)` gives a started broker; options are `RedisBroker`'s, with quick
    reconnects unless given. `await brokers(wrap, **options)` gives `wrap(broker)`, called
    before `start()`, so that what it attaches is in place before anything can arrive.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisBroker] = []

    @overload
    async def __call__(self, /, **options: Any) -> RedisBroker: ...

    @overload
    async def __call__(self, wrap: Callable[[RedisBroker], T], /, **options: Any) -> T: ...

    async def __call__(
        self, wrap: Callable[[RedisBroker], Any] | None = None, /, **options: Any
    ) -> Any:
        options.setdefault("reconnect_min", RECONNECT_MIN)
        options.setdefault("reconnect_max", RECONNECT_MAX)
        broker = RedisBroker(self.url, **options)
        self.made.append(broker)  # closed at the end even if `wrap` or `start` fails
        wrapped = broker if wrap is None else wrap(broker)
        await broker.start()
        return wrapped

    def maker(self, wrap: Callable[[RedisBroker], T], **defaults: Any) -> Maker[T]:
        """A `make(**options)` that gives `await self(wrap, **options)`, with `defaults` for
        the options not given (what a test file's `nodes` fixture returns)."""

        async def make(**options: Any) -> T:
            return await self(wrap, **(defaults | options))

        return make

    async def close_all(self, timeout: float = WAIT) -> None:
        """Close every broker made (closing one a test closed already is a no-op), each
        within `timeout` seconds. A close that hangs prints every task's stack (to see where
        it hangs) and raises `TimeoutError` once the others are closed."""
        hung: TimeoutError | None = None
        for broker in self.made:
            try:
                async with asyncio.timeout(timeout):
                    await broker.close()
            except TimeoutError as exc:
                for task in asyncio.all_tasks():
                    task.print_stack()
                hung = hung or exc
        if hung is not None:
            raise hung


async def numsub(client: Redis, name: str) -> int:
    """How many connections are subscribed to the pub/sub channel `name` (the full name in
    Redis, prefix included)."""
    [(_name, count)] = await client.pubsub_numsub(name)
    return int(count)


class Node(Watched):
    """One process's broker and what it delivered (attached before the broker starts)."""

    def __init__(self, broker: RedisBroker) -> None:
        super().__init__()
        self.broker = broker
        self.broker.on_resubscribed = self._resubscribed
        self.broker.attach(self._deliver)
        self.received: list[Message] = []
        self.resubscribed: list[frozenset[str]] = []

    def _deliver(self, message: Message) -> None:
        self.received.append(message)
        self.changed()

    def _resubscribed(self, channels: frozenset[str]) -> None:
        self.resubscribed.append(channels)
        self.changed()

    async def received_count(self, count: int) -> list[Message]:
        await self.until(lambda: len(self.received) >= count)
        return self.received


async def publish(broker: RedisBroker, channel: str, data: Data) -> Message | PushwireError:
    """What `done` was called with, awaited with a bound."""
    future: asyncio.Future[Message | PushwireError] = asyncio.get_running_loop().create_future()
    broker.publish(channel, data, future.set_result)
    async with asyncio.timeout(WAIT):
        return await future


async def publish_ok(broker: RedisBroker, channel: str, data: Data) -> Message:
    result = await publish(broker, channel, data)
    assert isinstance(result, Message), result
    return result


async def evalsha_calls(redis: Redis) -> int:
    """How many EVALSHA calls the Redis server has run (INFO commandstats)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
