"""Publishers that number what they publish: `POST /api/publish/<channel>`, the `publish`
envelope, and `POST /api/send/<user>` (direct messages), all through the clean proxy.

Each keeps up to `WINDOW` publishes in flight (a publisher that waited for each answer
before sending the next one reached a fraction of the asked rate on a busy machine: the
round trip, not the server, set its pace). The HTTP ones pipeline their requests on one
keep-alive connection, which the server answers in order, so a publisher's messages are
stored in the order it numbered them; a connection that breaks fails every publish in flight
on it (answer unknown: the ledger learns their positions from the subscribers) and the
next publish opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from typing import Final

from pushwire.client import Client, ClientError

from .ledger import PublishLog
from .proxy import FaultProxy

__all__ = ["WINDOW", "DirectPublisher", "EnvelopePublisher", "HttpPublisher", "KeepAlive"]

HTTP_TIMEOUT: Final = 3.0
#: Publishes in flight per publisher (below the server's `max_pipelined`, 16).
WINDOW: Final = 8


class KeepAlive:
    """HTTP/1.1 POSTs pipelined on one keep-alive connection to 127.0.0.1:`port`; answers
    are matched to requests in order. A connection that breaks or stays silent for
    `HTTP_TIMEOUT` fails every request in flight on it (OSError) and is closed; the next
    request opens a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: collections.deque[asyncio.Future[tuple[int, bytes]]] = collections.deque()
        self._reading: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self.connections = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Status and body of a POST (raises OSError or TimeoutError: no answer)."""
        writer = await self._connection()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        writer.write(head.encode() + body)
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                return await asyncio.shield(answer)
        except TimeoutError:
            self._drop(writer, TimeoutError("no answer"))
            raise

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._opening:
            if self._writer is None or self._writer.is_closing():
                async with asyncio.timeout(HTTP_TIMEOUT):
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self._writer = writer
                self.connections += 1
                self._reading = asyncio.create_task(self._read(reader, writer))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = _parse_head(head)
                body = await reader.readexactly(length)
                if not self._waiting or self._writer is not writer:
                    raise OSError("an answer nobody asked for")
                answer = self._waiting.popleft()
                if not answer.done():
                    answer.set_result((status, body))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self._drop(writer, OSError(f"connection lost: {exc!r}"))

    def _drop(self, writer: asyncio.StreamWriter, error: BaseException) -> None:
        """Fail what is in flight on `writer` and close it (once)."""
        if self._writer is not writer:
            return
        self._writer = None
        waiting, self._waiting = self._waiting, collections.deque()
        for answer in waiting:
            if not answer.done():
                answer.set_exception(error)
                answer.exception()  # retrieved: a publish that timed out does not await it
        writer.transport.abort()

    async def close(self) -> None:
        if self._writer is not None:
            self._drop(self._writer, OSError("closed"))
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 "):
        raise OSError(f"no answer: {head[:80]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise OSError("a chunked answer")
    return int(lines[0].split(b" ", 2)[1]), length


class _Paced:
    """A publisher's loop: one publish every 1/`rate` seconds (catching up when late, up to
    WINDOW in flight), until `stop` or `count` publishes."""

    prefix = "?"

    def __init__(self, log: PublishLog, channel: str, rate: float) -> None:
        self.name = self.prefix
        self.log = log
        self.channel = channel
        self.rate = rate
        self.stop = asyncio.Event()
        self.attempts = 0
        self.confirmed = 0
        #: When the first publish was sent and the last answer came (time.monotonic()).
        self.began: float | None = None
        self.ended: float | None = None

    async def run(self, count: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        free = asyncio.Semaphore(WINDOW)
        flying: set[asyncio.Task[None]] = set()
        self.began = time.monotonic()
        try:
            while not self.stop.is_set() and (count is None or self.attempts < count):
                await free.acquire()
                message_id = f"{self.name}{self.attempts}"
                self.attempts += 1
                self.log.sent(message_id, time.time())
                task = asyncio.create_task(self._one(message_id, free))
                flying.add(task)
                task.add_done_callback(flying.discard)
                next_at += 1 / self.rate
                delay = next_at - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self.stop.wait()
                elif delay < -1.0:
                    next_at = loop.time()  # over a second late: no burst to catch up
            await asyncio.gather(*flying)
        finally:
            for task in flying:
                task.cancel()
            await asyncio.gather(*flying, return_exceptions=True)
            self.ended = time.monotonic()

    async def _one(self, message_id: str, free: asyncio.Semaphore) -> None:
        try:
            position = await self.publish(message_id)
        finally:
            free.release()
        if position is not None:
            self.confirmed += 1
            self.log.placed(message_id, position, time.time())

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        raise NotImplementedError

    async def close(self) -> None:
        """Close its connection."""


class HttpPublisher(_Paced):
    """`POST /api/publish/<channel>`, pipelined on a keep-alive connection through the
    clean proxy."""

    prefix = "h"

    def __init__(self, log: PublishLog, channel: str, rate: float, proxy: FaultProxy) -> None:
        super().__init__(log, channel, rate)
        self.http = KeepAlive(proxy.port)

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        try:
            status, body = await self.http.post(f"/api/publish/{self.channel}", message_id.encode())
        except (OSError, TimeoutError):
            return None
        if status != 200:
            return None
        answer = json.loads(body)
        return str(answer["epoch"]), int(answer["offset"])

    async def close(self) -> None:
        await self.http.close()


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
    """`POST /api/send/<user>` to each user in turn (pipelined on a keep-alive connection),
    each user's sends and their places in its inbox (the answer's `epoch` and `offset`)
    kept in that user's log."""

    prefix = "d"

    def __init__(self, logs: dict[str, PublishLog], rate: float, proxy: FaultProxy) -> None:
        super().__init__(PublishLog(), "", rate)
        self.http = KeepAlive(proxy.port)
        self.logs = logs
        self.users = list(logs)
        self._turn = 0

    async def publish(self, message_id: str) -> tuple[str, int] | None:
        user = self.users[self._turn % len(self.users)]
        self._turn += 1
        log = self.logs[user]
        log.sent(message_id, time.time())
        try:
            status, body = await self.http.post(f"/api/send/{user}", message_id.encode())
        except (OSError, TimeoutError):
            return None
        if status == 200:
            answer = json.loads(body)
            log.placed(message_id, (str(answer["epoch"]), int(answer["offset"])), time.time())
            self.confirmed += 1
        return None

    async def close(self) -> None:
        await self.http.close()
