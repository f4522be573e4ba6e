"""One soak run: a `pushwire serve` process with its default settings, thousands of
well-behaved subscribers on mixed transports, steady publishing, and an abusive slice from
another source address, for a bounded time; the server's RSS, descriptors and CPU sampled
throughout.

`await soak(plan)` gives a `SoakReport`: the CI test asserts on a short one, `python -m
bench --workloads soak` runs the long one and prints it (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Final

from tests.servers import ServerProcess, start_server

from .abusers import AbuseCounts, half_open, oversize, reconnect_storm, slow_reader
from .fleet import RawSse, RawWebSocket, Tally, client_subscriber, open_raw

__all__ = ["Sample", "SoakPlan", "SoakReport", "soak"]

BIG: Final = "soak-big"
#: Raw subscribers connecting at once while the fleet is built.
CONNECT_BATCH: Final = 200
PAGE: Final = os.sysconf("SC_PAGE_SIZE")
TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SoakPlan:
    """What one soak does.

    Args:
        connections: well-behaved subscribers in all (raw WebSocket and raw SSE, and
            `clients` Python clients on each of `transports`).
        seconds: how long publishing and abuse go on.
        channels: `soak-0` .. `soak-{channels-1}`, subscribers spread evenly.
        rate: messages per second over those channels (small ones).
        big_rate, big_size: messages per second, and their size, on `soak-big`, the channel
            the slow readers subscribe to (with `big_subscribers` well-behaved ones).
        sse_share: the share of raw subscribers on SSE (the rest on WebSocket).
        transports, clients: the Python client's subscribers.
        slow_readers, half_open, storm_rate, oversize: the abusive slice (see abusers.py);
            a slow reader starts again after `slow_reader_life` seconds.
        warmup: the share of `seconds` after which RSS should be flat: every channel's
            history full (1,000 messages at the default rates take about 500 s), the
            slow readers through a few cycles.
        sample_every: seconds between two samples of the server's RSS, fds and CPU.
        extra: more `pushwire serve` arguments.
    """

    connections: int = 10_000
    seconds: float = 1800.0
    channels: int = 10
    rate: float = 20.0
    big_rate: float = 2.0
    big_size: int = 256 * 1024
    big_subscribers: int = 10
    sse_share: float = 0.3
    transports: tuple[str, ...] = ("websocket", "sse", "stream", "longpoll", "polling")
    clients: int = 10
    slow_readers: int = 20
    slow_reader_life: float = 60.0
    half_open: int = 50
    storm_rate: float = 20.0
    oversize: int = 2
    warmup: float = 0.3
    sample_every: float = 5.0
    abuser_source: str = "127.0.0.2"
    extra: tuple[str, ...] = ()
    settle: float = 60.0


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since publishing began
    rss: int  # bytes
    fds: int
    cpu: float  # server CPU seconds so far


@dataclass
class SoakReport:
    plan: SoakPlan
    subscribers: int = 0
    published: int = 0
    received: int = 0
    lost: int = 0  # well-behaved subscribers' missing messages (gapped or silent)
    duplicates: int = 0
    gaps: int = 0
    failures: int = 0
    closed_by_server: list[str] = field(default_factory=list)
    abuse: AbuseCounts = field(default_factory=AbuseCounts)
    samples: list[Sample] = field(default_factory=list)
    fds_start: int = 0
    fds_end: int = 0
    rss_start: int = 0  # after the fleet connected, before publishing
    rss_warm: int = 0  # at the end of the warm-up
    rss_end: int = 0  # after the abusers left and the server settled
    cpu_seconds: float = 0.0
    #: The server's own count of connections it closed as slow consumers (4001), from
    #: `/metrics`: what the slow readers met, as the server saw it.
    server_slow_consumer_closes: int = -1
    connect_seconds: float = 0.0
    server_alive: bool = True

    def rss_slope_mb_per_hour(self) -> float:
        """Least-squares slope of RSS over the samples after the warm-up."""
        warm = self.plan.seconds * self.plan.warmup
        points = [(s.at, s.rss) for s in self.samples if s.at >= warm]
        if len(points) < 3:
            return 0.0
        slope = statistics.linear_regression(
            [p[0] for p in points], [float(p[1]) for p in points]
        ).slope
        return slope * 3600 / 1e6

    def summary(self) -> dict[str, object]:
        return {
            "subscribers": self.subscribers,
            "published": self.published,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "gaps": self.gaps,
            "failures": self.failures,
            "closed_by_server": len(self.closed_by_server),
            "abuse_cycles": dict(self.abuse.cycles),
            "abuse_answers": dict(self.abuse.answers),
            "fds_start": self.fds_start,
            "fds_end": self.fds_end,
            "rss_start_mb": round(self.rss_start / 1e6, 1),
            "rss_warm_mb": round(self.rss_warm / 1e6, 1),
            "rss_end_mb": round(self.rss_end / 1e6, 1),
            "rss_end_vs_warm": round(self.rss_end / self.rss_warm, 3) if self.rss_warm else None,
            "rss_slope_mb_per_hour": round(self.rss_slope_mb_per_hour(), 1),
            "rss_peak_mb": round(max((s.rss for s in self.samples), default=0) / 1e6, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "server_slow_consumer_closes": self.server_slow_consumer_closes,
            "cpu_share": round(self.cpu_seconds / self.plan.seconds, 3),
            "connect_seconds": round(self.connect_seconds, 1),
            "server_alive": self.server_alive,
        }


def _measure(pid: int) -> tuple[int, int, float]:
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    return rss, fds, cpu


def _slow_consumer_closes(server: ServerProcess) -> int:
    """`pushwire_slow_consumer_closes_total` from the server's `/metrics` (-1: unreadable)."""
    try:
        with urllib.request.urlopen(server.url("/metrics"), timeout=30) as answer:
            text = answer.read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("pushwire_slow_consumer_closes_total "):
            return int(float(line.split()[1]))
    return -1


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Publisher:
    """POSTs `/api/publish/<channel>` on one keep-alive connection, in order."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def publish(self, channel: str, body: bytes) -> None:
        if self.stream is None:
            self.stream = await asyncio.open_connection(self.server.host, self.server.port)
        reader, writer = self.stream
        writer.write(
            f"POST /api/publish/{channel} HTTP/1.1\r\nHost: {self.server.host}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        if status != b"200":
            raise RuntimeError(f"publish answered {head[:60]!r}")

    def close(self) -> None:
        if self.stream is not None:
            self.stream[1].transport.abort()


async def _paced(
    publisher: _Publisher,
    channels: list[str],
    rate: float,
    size: int,
    last: dict[str, int],
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while not stop.is_set():
        channel = channels[sent % len(channels)]
        seq = last[channel] + 1
        body = str(seq).encode() + (b":" + b"x" * size if size else b"")
        await publisher.publish(channel, body)
        last[channel] = seq
        sent += 1
        delay = start + sent / rate - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def soak(plan: SoakPlan) -> SoakReport:
    _raise_file_limit()
    report = SoakReport(plan)
    server = await asyncio.to_thread(start_server, *plan.extra)
    pid = server.process.pid
    host, port = server.host, server.port
    stop_clients = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    raw: list[RawWebSocket | RawSse] = []
    tallies: list[Tally] = []
    try:
        began = time.monotonic()
        # The fleet: raw subscribers in batches, then the Python clients.
        channels = [f"soak-{k}" for k in range(plan.channels)]
        n_clients = plan.clients * len(plan.transports)
        n_raw = max(0, plan.connections - n_clients - plan.big_subscribers)
        n_sse = round(n_raw * plan.sse_share)
        wanted: list[tuple[type[RawWebSocket] | type[RawSse], Tally]] = []
        for i in range(n_raw):
            kind: type[RawWebSocket] | type[RawSse] = RawSse if i < n_sse else RawWebSocket
            label = "sse" if kind is RawSse else "ws"
            wanted.append((kind, Tally(channels[i % len(channels)], f"raw-{label}-{i}")))
        for i in range(plan.big_subscribers):
            wanted.append((RawWebSocket, Tally(BIG, f"raw-big-{i}")))
        for start in range(0, len(wanted), CONNECT_BATCH):
            batch = wanted[start : start + CONNECT_BATCH]
            raw += await asyncio.gather(
                *(open_raw(kind, tally, host, port) for kind, tally in batch)
            )
            tallies += [tally for _, tally in batch]
        url = server.url("/pushwire")
        for t, transport in enumerate(plan.transports):
            for i in range(plan.clients):
                tally = Tally(channels[(t + i) % len(channels)], f"{transport}-{i}")
                tallies.append(tally)
                ready = asyncio.Event()
                tasks.append(
                    asyncio.create_task(
                        client_subscriber(url, transport, tally, ready, stop_clients)
                    )
                )
                await asyncio.wait_for(ready.wait(), 60)
        report.subscribers = len(tallies)
        report.connect_seconds = time.monotonic() - began
        report.rss_start, report.fds_start, cpu0 = _measure(pid)

        # Publishing and abuse, sampled.
        last = dict.fromkeys([*channels, BIG], 0)
        stop_publishing = asyncio.Event()
        small, big = _Publisher(server), _Publisher(server)
        publishers = [
            asyncio.create_task(_paced(small, channels, plan.rate, 0, last, stop_publishing)),
            asyncio.create_task(
                _paced(big, [BIG], plan.big_rate, plan.big_size, last, stop_publishing)
            ),
        ]
        abusers = AbuseThread(plan, host, port, report.abuse)
        t0 = time.monotonic()
        warm_at = plan.seconds * plan.warmup
        while (now := time.monotonic() - t0) < plan.seconds:
            rss, fds, cpu = _measure(pid)
            report.samples.append(Sample(now, rss, fds, cpu - cpu0))
            if not report.rss_warm and now >= warm_at:
                report.rss_warm = rss
            for task in publishers:
                if task.done():
                    task.result()  # a publish that failed ends the soak with its error
            await asyncio.sleep(min(plan.sample_every, max(0.0, plan.seconds - now)))
        await abusers.stop(90.0)
        stop_publishing.set()
        await asyncio.gather(*publishers)
        small.close()
        big.close()
        report.published = sum(last.values())

        # Let every subscriber catch up (what is missing then is lost), and the server drop
        # what the abusers left (their closes' grace) before the last measurement.
        deadline = time.monotonic() + plan.settle
        while time.monotonic() < deadline:
            behind = [t for t in tallies if t.last < last[t.channel] and t.closed is None]
            rss, fds, cpu = _measure(pid)
            if not behind and fds <= report.fds_start:
                break
            await asyncio.sleep(0.5)
        report.rss_end, report.fds_end, cpu = _measure(pid)
        report.cpu_seconds = cpu - cpu0
        report.samples.append(
            Sample(time.monotonic() - t0, report.rss_end, report.fds_end, report.cpu_seconds)
        )
        for tally in tallies:
            tally.finish(last[tally.channel])
            report.received += tally.received
            report.lost += tally.missing
            report.duplicates += tally.duplicates
            report.gaps += tally.gaps
            report.failures += tally.failures
            if tally.closed is not None:
                report.closed_by_server.append(f"{tally.label}: {tally.closed}")
        report.server_alive = server.process.poll() is None
        report.server_slow_consumer_closes = await asyncio.to_thread(_slow_consumer_closes, server)
        return report
    finally:
        stop_clients.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        for protocol in raw:
            if protocol.transport is not None:
                protocol.transport.abort()
        await asyncio.to_thread(server.stop)


class AbuseThread:
    """The abusive slice on an event loop of its own, in a thread. On the fleet's loop (at
    10,000 subscribers, 20,000 deliveries a second in Python) a cut slow reader's drain,
    the few MB the server's kernel still sends it after the close, got one read per turn
    of a loop that took a second or more: 201 of 547 drains did not see the end within
    10 s, though the server had cut them (docs/benchmarks.md)."""

    def __init__(self, plan: SoakPlan, host: str, port: int, counts: AbuseCounts) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        started = threading.Event()

        async def main() -> None:
            self._stop = stop = asyncio.Event()
            started.set()
            tasks = _abusers(plan, host, port, stop, counts)
            await stop.wait()
            _, pending = await asyncio.wait(tasks, timeout=60)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        def run() -> None:
            try:
                self._loop.run_until_complete(main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="soak-abusers", daemon=True)
        self._thread.start()
        started.wait(30)

    async def stop(self, timeout: float) -> None:
        """Tell every abuser to stop, and wait (at most `timeout` s) until they did."""
        stop = self._stop
        if stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                self._loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(self._thread.join, timeout)


def _abusers(
    plan: SoakPlan, host: str, port: int, stop: asyncio.Event, counts: AbuseCounts
) -> list[asyncio.Task[None]]:
    source, life = plan.abuser_source, plan.slow_reader_life
    out = [
        *(
            slow_reader(host, port, source, BIG, life, stop, counts)
            for _ in range(plan.slow_readers)
        ),
        *(half_open(host, port, source, stop, counts) for _ in range(plan.half_open)),
        *(oversize(host, port, source, 1024 * 1024, stop, counts) for _ in range(plan.oversize)),
    ]
    if plan.storm_rate > 0:
        out.append(reconnect_storm(host, port, source, plan.storm_rate, stop, counts))
    return [asyncio.create_task(coro) for coro in out]
