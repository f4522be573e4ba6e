"""A loopback TCP proxy that loses connections on purpose: every connection at once (`cut`),
or one request's answer (`lose_answer_to`: the request reaches the server and runs, its
answer never comes back and the connection closes, as when a link dies at that moment)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

__all__ = ["CutProxy"]


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    # Set once a request holding the marker went up: the next answer is swallowed.
    swallow: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        self.client.close()
        self.upstream.close()


class CutProxy:
    """Forwards 127.0.0.1:`port` to `host`:`target_port`, byte for byte."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        #: Answers swallowed so far (`lose_answer_to`).
        self.lost = 0
        self._marker: bytes | None = None
        self._lost = asyncio.Event()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        tasks = [task for link in self._links for task in link.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def cut(self) -> int:
        """Close every open connection (both sides); how many there were."""
        links = list(self._links)
        for link in links:
            link.close()
        return len(links)

    def lose_answer_to(self, marker: bytes) -> None:
        """The next request that holds `marker` goes through; the answer to it does not, and
        its connection is closed."""
        self._marker = marker
        self._lost.clear()

    async def answer_lost(self, timeout: float = 20) -> None:
        """Until `lose_answer_to`'s answer was swallowed."""
        await asyncio.wait_for(self._lost.wait(), timeout)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._pump_up(link, reader)),
            asyncio.ensure_future(self._pump_down(link, up_reader)),
        ]
        await asyncio.wait(link.tasks)
        self._links.discard(link)

    async def _pump_up(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                marker = self._marker
                if marker is not None and marker in data:
                    self._marker = None
                    link.swallow = True
                link.upstream.write(data)
                await link.upstream.drain()
        link.close()

    async def _pump_down(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if link.swallow:
                    self.lost += 1
                    self._lost.set()
                    break
                link.client.write(data)
                await link.client.drain()
        link.close()
