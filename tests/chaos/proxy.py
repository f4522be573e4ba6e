"""A loopback-only TCP proxy that injects faults: what a flaky network and a load balancer
without sticky sessions do to pushwire's clients.

Every accepted connection goes to the next backend that is up (round-robin over all
connections: consecutive requests of one client land on alternate nodes). The faults, each
switched on and off by the scenario's schedule:

- `reset_all()`: every open connection is closed with a TCP RST (SO_LINGER 0);
- `truncating`: bytes coming back from a backend are cut at a random point, then both sides
  are reset (a response or a frame torn in the middle);
- `stall()`: nothing moves in either direction, new connections wait; `resume()` lets
  everything through again, nothing lost;
- `blackhole()`: bytes vanish, new connections are accepted and never answered; when the
  black hole ends, every connection it touched is reset (as a client or a node would drop it
  after its timeout);
- `freeze()`: the connections open now go silent for good, neither moving nor closed, even
  when their backend closes (a link torn where neither end sees it, a NAT that forgot the
  mapping); new ones flow;
- `hold_after_head`: a new connection's answer stops for good right after its response head
  (a node that accepted the request and never got further), neither moving nor closed;
- `take_down(i)` / `bring_up(i)`: backend i is out of the rotation, its connections reset;
- `refuse_upgrade`: a request that asks for a WebSocket upgrade is reset (a proxy that blocks
  WebSocket: clients switch transport);
- `cut_answer_after`: once, after a chunk towards the backend contains these bytes, the
  backend's answer is dropped and the connection reset (the request was carried out, its
  answer lost).
- `freeze_after`: once, after a chunk towards the backend contains these bytes (passed on:
  the request is carried out), that connection goes silent for good, neither moving nor
  closed (an answer that never comes).

The random choices (where to cut) come from the proxy's own seeded `random.Random`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
from collections import Counter

__all__ = ["Address", "FaultProxy"]

Address = tuple[str, int]
_CHUNK = 65536


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, not a FIN: what a crashed peer or a middlebox that gave up
    looks like to the other side."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and, once chosen, its backend connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.backend: int | None = None
        self._closed = False
        self.doomed = False  # touched by a black hole: reset when it ends
        self.drop_answer = False
        self.held = False  # its answer stops after the response head (`hold_after_head`)
        self.ended = asyncio.Event()  # reset or closed

    def closed(self) -> bool:
        """Reset or closed (a call, not an attribute: it changes while a coroutine
        awaits)."""
        return self._closed

    def close(self, *, reset: bool) -> None:
        """Close both sides (`reset`: with a RST); a second close does nothing."""
        if self._closed:
            return
        self._closed = True
        self.ended.set()
        if reset:
            _reset(self.client)
            if self.upstream is not None:
                _reset(self.upstream)
        else:
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()

    def reset(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.ended.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to `backends` (loopback only)."""

    def __init__(self, backends: list[Address], *, seed: int = 0) -> None:
        for host, _port in backends:
            if not _is_loopback(host):
                raise ValueError(f"the chaos proxy only forwards to loopback, not {host!r}")
        self.backends = list(backends)
        self.down: set[int] = set()
        self.truncating = False
        self.refuse_upgrade = False
        self.cut_answer_after: bytes | None = None
        self.freeze_after: bytes | None = None
        self.hold_after_head = False
        #: Bytes a second the client's side may send (None: as fast as it comes): a slow
        #: uplink, paced chunk by chunk.
        self.upload_rate: int | None = None
        #: What the proxy did: connections, resets, truncated, refused, cut answers.
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._rng = random.Random(seed)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._blackhole = False
        self._links: set[_Link] = set()
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._blackhole = False
        self._flowing.set()
        for link in list(self._links):
            link.reset()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # -- faults --------------------------------------------------------------------------

    def reset_all(self) -> int:
        links = [link for link in self._links if not link.closed()]
        for link in links:
            link.reset()
        self.counts["resets"] += len(links)
        return len(links)

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def blackhole(self) -> None:
        self._blackhole = True
        for link in self._links:
            link.doomed = True
        self._flowing.clear()  # new connections are held

    def end_blackhole(self) -> None:
        self._blackhole = False
        doomed = [link for link in self._links if link.doomed and not link.closed()]
        for link in doomed:
            link.reset()
        self.counts["resets"] += len(doomed)
        self._flowing.set()

    def freeze(self) -> int:
        frozen = [link for link in self._links if not link.closed()]
        for link in frozen:
            link.doomed = True  # its bytes vanish; only stop() resets it
        self.counts["frozen"] += len(frozen)
        return len(frozen)

    def take_down(self, index: int) -> None:
        self.down.add(index)
        for link in list(self._links):
            if link.backend == index:
                link.reset()
                self.counts["resets"] += 1

    def bring_up(self, index: int) -> None:
        self.down.discard(index)

    # -- forwarding ----------------------------------------------------------------------

    def _next_backend(self) -> int | None:
        candidates = [i for i in range(len(self.backends)) if i not in self.down]
        if not candidates:
            return None
        choice = candidates[self._turn % len(candidates)]
        self._turn += 1
        return choice

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link(writer)
        self._links.add(link)
        self.counts["connections"] += 1
        try:
            await self._serve(link, reader)
            if link.doomed:
                # Silent for good: not even its backend's close passes (only a reset of
                # the black hole's end, or stop(), ends it).
                await link.ended.wait()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close(reset=False)
            self._links.discard(link)
            self._tasks.discard(task)

    async def _serve(self, link: _Link, reader: asyncio.StreamReader) -> None:
        if self._blackhole:
            link.doomed = True
        await self._flowing.wait()
        if link.closed():
            return
        first = b""
        if self.refuse_upgrade:
            first = await reader.read(_CHUNK)
            if b"upgrade: websocket" in first.lower():
                self.counts["refused"] += 1
                link.reset()
                return
        index = self._next_backend()
        if index is None:
            link.reset()
            return
        link.backend = index
        link.held = self.hold_after_head
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backends[index])
        except OSError:
            link.reset()  # a node that is not there: the client sees its connection reset
            return
        link.upstream = up_writer
        if link.closed():  # reset while connecting
            _reset(up_writer)
            return
        if first:
            up_writer.write(first)
        towards = asyncio.ensure_future(self._pipe(link, reader, up_writer, backwards=False))
        try:
            await self._pipe(link, up_reader, link.client, backwards=True)
        finally:
            towards.cancel()
            await asyncio.gather(towards, return_exceptions=True)

    async def _paced(
        self, link: _Link, data: bytes, writer: asyncio.StreamWriter, rate: int
    ) -> None:
        """Write `data` at `rate` bytes a second: a slice every 50 ms (a slow link's pace,
        not a wait for an event)."""
        step = max(1, rate // 20)
        for start in range(0, len(data), step):
            if link.closed() or link.doomed:
                return
            writer.write(data[start : start + step])
            await writer.drain()
            await asyncio.sleep(0.05)

    async def _pipe(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        backwards: bool,
    ) -> None:
        """Copy `reader` to `writer` (`backwards`: from the backend to the client) until
        either side ends, applying the faults to each chunk."""
        while data := await reader.read(_CHUNK):
            if self._blackhole or link.doomed:
                continue  # vanishes
            await self._flowing.wait()
            if link.closed() or link.doomed:
                return
            if backwards:
                if link.held:
                    head, found, _ = data.partition(b"\r\n\r\n")
                    writer.write(head + found)
                    self.counts["held"] += 1
                    link.doomed = True  # the rest vanishes; only stop() resets it
                    continue
                if link.drop_answer:
                    self.counts["cut answers"] += 1
                    link.reset()
                    return
                if self.truncating:
                    # The client gets a prefix and a clean end of stream (FIN): a torn
                    # answer, not a reset (a RST could discard the prefix unread).
                    writer.write(data[: self._rng.randrange(len(data))])
                    self.counts["truncated"] += 1
                    if link.upstream is not None:
                        _reset(link.upstream)
                    link.close(reset=False)
                    return
            elif self.cut_answer_after is not None and self.cut_answer_after in data:
                self.cut_answer_after = None
                link.drop_answer = True
            elif self.freeze_after is not None and self.freeze_after in data:
                self.freeze_after = None
                self.counts["frozen"] += 1
                link.doomed = True  # what follows vanishes; only stop() resets it
            if not backwards and self.upload_rate is not None:
                await self._paced(link, data, writer, self.upload_rate)
                continue
            writer.write(data)
            await writer.drain()
        if not link.closed() and not link.doomed and writer.can_write_eof():
            writer.write_eof()  # a half-close passes through as one
