"""One chaos run: start the cluster, subscribe every client, publish at a steady rate while
the schedule's faults happen, let every subscriber catch up, stop everything, and check
each subscriber's record with the ledger.

`await run(plan, directory)` gives a `Report`; the tests assert on it, the bench prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .cluster import Cluster
from .ledger import Counts, PublishLog, Record, check, last_position, recovery_times
from .publishers import DirectPublisher, EnvelopePublisher, HttpPublisher
from .remote import RemoteSubscriber
from .schedule import FaultEvent, make_schedule
from .subscribers import BrowserSubscriber, PythonSubscriber, Subscriber

if TYPE_CHECKING:
    from playwright.async_api import Browser

__all__ = [
    "BROWSER_TRANSPORTS",
    "PYTHON_TRANSPORTS",
    "Plan",
    "Report",
    "load_range",
    "percentile",
    "run",
]

CHANNEL: Final = "chaos"
LOAD_EVERY: Final = 5.0
#: A `long_stall` lasts until more direct messages than this were sent during it (the
#: `max_unacked` that closed a session before the inbox).
LONG_STALL_DIRECTS: Final = 1000
PYTHON_TRANSPORTS: Final = ("websocket", "sse", "stream", "longpoll", "polling", "tcp")
BROWSER_TRANSPORTS: Final = ("websocket", "sse", "longpoll", "iframe")


@dataclass(frozen=True)
class Plan:
    """What one run does.

    Args:
        label: the fault column of the report.
        faults: the kinds the schedule draws from (schedule.py).
        length: seconds of publishing under faults (unless `messages` ends it first).
        every: one fault per this many seconds.
        rate: messages per second, both publishers together.
        python: the Python client's subscribers, one per entry (its transports, in order).
        browser: pushwire.js subscribers, one per entry, in Chromium.
        direct: each subscriber is also a user sent direct messages (at `direct_rate`, by
            default `rate` / 2, all users together).
        messages: stop publishing after this many (the bench's long runs).
        extra: more `pushwire serve` arguments for the nodes.
        publishers: how many publishers of each kind (HTTP, envelope; direct), sharing
            `rate`.
        settle: how long subscribers may take to catch up after the last publish (what is
            missing then counts as lost).
        remote: each Python subscriber in a process of its own (remote.py), beside the
            harness's event loop rather than in it (the bench's long runs).
    """

    label: str
    faults: tuple[str, ...]
    seed: int
    length: float = 6.0
    every: float = 2.0
    rate: float = 100.0
    python: tuple[tuple[str, ...], ...] = tuple((t,) for t in PYTHON_TRANSPORTS)
    browser: tuple[tuple[str, ...], ...] = ()
    direct: bool = False
    direct_rate: float | None = None
    messages: int | None = None
    extra: tuple[str, ...] = ()
    settle: float = 20.0
    publishers: int = 1
    remote: bool = False

    def schedule(self) -> list[FaultEvent]:
        return make_schedule(self.seed, self.faults, self.length, self.every)


@dataclass
class Report:
    """What a run found: figures per subscriber label (channel and direct), recovery
    times, and how to replay it."""

    plan: Plan
    schedule: list[FaultEvent]
    channel: dict[str, Counts] = field(default_factory=dict)
    direct: dict[str, Counts] = field(default_factory=dict)
    recovery: list[float] = field(default_factory=list)
    proxy: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    published: int = 0
    #: The transports each subscriber received messages over.
    transports: dict[str, set[str]] = field(default_factory=dict)
    #: The state of each subscriber that broke a rule, at the end.
    states: list[str] = field(default_factory=list)
    #: When each fault began and ended (time.time()).
    windows: list[tuple[float, float]] = field(default_factory=list)
    #: Each user's direct messages: when sent, where its inbox put them.
    direct_logs: dict[str, PublishLog] = field(default_factory=dict)
    #: The nodes' warnings and errors (what to look at when a run fails).
    node_log: list[str] = field(default_factory=list)
    #: Seconds from the first publish to the last channel publisher's end.
    publishing: float = 0.0
    #: The machine's 1-minute load average, every LOAD_EVERY seconds while publishing.
    load: list[float] = field(default_factory=list)
    #: Channel publishes sent (answered or not).
    attempted: int = 0

    @property
    def rate(self) -> float:
        """Channel messages published per second (confirmed or not)."""
        return self.attempted / self.publishing if self.publishing > 0 else 0.0

    @property
    def replay(self) -> str:
        return f"CHAOS_SEED={self.plan.seed} ({', '.join(map(str, self.schedule)) or 'no fault'})"

    def violations(self, *, direct: bool = False) -> list[str]:
        source = self.direct if direct else self.channel
        return [v for counts in source.values() for v in counts.violations]

    def summary(self) -> str:
        lines = [f"{self.plan.label}: {self.replay}, {self.elapsed:.1f} s, proxy {self.proxy}"]
        if self.publishing:
            lines.append(
                f"  published {self.attempted} in {self.publishing:.1f} s "
                f"({self.rate:.0f}/s of {self.plan.rate:g}/s asked), load {load_range(self.load)}"
            )
        for kind, cells in (("channel", self.channel), ("direct", self.direct)):
            for label, c in cells.items():
                lines.append(
                    f"  {kind} {label}: sent {c.sent} received {c.received} "
                    f"gap {c.lost_in_gap} reported {c.lost_reported} silent {c.lost_silently} "
                    f"dup {c.duplicated} "
                    f"gaps {c.gaps} (empty {c.empty_gaps})"
                )
        lines += [f"  {line}" for line in self.states + self.node_log[:20]]
        if self.recovery:
            lines.append(
                f"  recovery p50 {percentile(self.recovery, 50):.2f} s "
                f"p99 {percentile(self.recovery, 99):.2f} s"
            )
        return "\n".join(lines)


def load_range(samples: Sequence[float]) -> str:
    """The load average's range and mean while publishing."""
    if not samples:
        return "-"
    return f"{min(samples):.1f}-{max(samples):.1f} (mean {statistics.fmean(samples):.1f})"


def percentile(values: Sequence[float], p: int) -> float:
    """The `p`th percentile (1-99) of `values` (not empty)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def _subscribers(plan: Plan, cluster: Cluster, browser: Browser | None) -> list[Subscriber]:
    subscribers: list[Subscriber] = []
    for transports in plan.python:
        label = "/".join(transports)
        user = f"user-{label.replace('/', '-')}" if plan.direct else None
        kind = RemoteSubscriber if plan.remote else PythonSubscriber
        subscribers.append(kind(label, cluster.url(transports[0]), list(transports), user))
    for transports in plan.browser:
        assert browser is not None, "browser subscribers need a browser"
        label = "js " + "/".join(transports)
        user = f"js-{'-'.join(transports)}" if plan.direct else None
        http, _ = cluster.faulty
        subscribers.append(BrowserSubscriber(label, browser, http.url(""), list(transports), user))
    return subscribers


async def _fault(
    cluster: Cluster, event: FaultEvent, directs: Sequence[DirectPublisher] = ()
) -> None:
    """Carry out one fault, from its start to its end (a `long_stall` lasts until over
    LONG_STALL_DIRECTS direct messages were sent during it, at most 3 times its duration,
    whatever the machine's speed)."""
    proxies = cluster.faulty
    kind, duration = event.kind, event.duration
    if kind == "reset":
        for proxy in proxies:
            proxy.reset_all()
    elif kind == "truncate":
        for proxy in proxies:
            proxy.truncating = True
        await asyncio.sleep(duration)
        for proxy in proxies:
            proxy.truncating = False
    elif kind in ("stall", "long_stall"):
        for proxy in proxies:
            proxy.stall()
        sent_before = sum(d.attempts for d in directs)
        await asyncio.sleep(duration)
        if kind == "long_stall" and directs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * duration):
                    while sum(d.attempts for d in directs) - sent_before <= LONG_STALL_DIRECTS:
                        await asyncio.sleep(0.05)
        for proxy in proxies:
            proxy.resume()
    elif kind == "blackhole":
        for proxy in proxies:
            proxy.blackhole()
        await asyncio.sleep(duration)
        for proxy in proxies:
            proxy.end_blackhole()
    elif kind == "node_down":
        for proxy in proxies:
            proxy.take_down(event.node)
        await asyncio.sleep(duration)
        for proxy in proxies:
            proxy.bring_up(event.node)
    elif kind == "kill":
        await cluster.kill(event.node, duration)
    elif kind in ("redis_volatile", "redis_persistent"):
        await cluster.restart_redis(duration)
    elif kind == "redis_reset":
        await asyncio.to_thread(cluster.redis.stop)
        await asyncio.sleep(0.2)
        for proxy in proxies:
            proxy.reset_all()
        await asyncio.sleep(duration)
        await asyncio.to_thread(cluster.redis.start)
    elif kind == "switch":
        for proxy in proxies:
            proxy.refuse_upgrade = True
            proxy.reset_all()
        await asyncio.sleep(duration)
        for proxy in proxies:
            proxy.refuse_upgrade = False
    else:
        raise ValueError(f"unknown fault {kind!r}")


async def _drive(
    cluster: Cluster,
    schedule: list[FaultEvent],
    windows: list[tuple[float, float]],
    stop: asyncio.Event,
    directs: Sequence[DirectPublisher] = (),
) -> None:
    """Carry out the schedule's faults, each to its end (a fault is never left half
    done), until the schedule or `stop` ends; `windows` gets when each began and ended
    (time.time())."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    for event in schedule:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, began + event.at - loop.time())):
                await stop.wait()
        if stop.is_set():
            return
        began_at = time.time()
        await _fault(cluster, event, directs)
        windows.append((began_at, time.time()))


async def _settled(
    subscribers: list[Subscriber], log: PublishLog, logs: dict[str, PublishLog], bound: float
) -> None:
    """Until every subscriber has (or skipped by a gap) the channel's last message and its
    user's last direct message, at most `bound` seconds (what is missing then is lost)."""

    async def drained() -> None:
        for subscriber in subscribers:
            if isinstance(subscriber, BrowserSubscriber):
                await subscriber.drain()

    def caught_up(records: list[Record], log: PublishLog) -> bool:
        log.learn(records)
        final = log.final()
        if final is None:
            return True
        rank = log.ranker()
        for record in records:
            last = last_position(record)
            if record.stopped is None and (last is None or rank(last) < rank(final)):
                return False
        return True

    def done() -> bool:
        if not caught_up([s.record for s in subscribers], log):
            return False
        return all(caught_up([s.direct], logs[s.user]) for s in subscribers if s.user in logs)

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(bound):
            while not done():
                await asyncio.sleep(0.1)
                await drained()


async def _sampleload_range(into: list[float]) -> None:
    while True:
        into.append(os.getloadavg()[0])
        await asyncio.sleep(LOAD_EVERY)


async def run(plan: Plan, directory: Path, browser: Browser | None = None) -> Report:
    """One run of `plan` (processes and files under `directory`); everything it started is
    stopped before it returns, whatever happened."""
    schedule = plan.schedule()
    report = Report(plan, schedule)
    persistent = "redis_persistent" in plan.faults
    cluster = Cluster(directory, persistent=persistent, seed=plan.seed, extra=plan.extra)
    log = PublishLog()
    subscribers: list[Subscriber] = []
    publishers: list[HttpPublisher | EnvelopePublisher | DirectPublisher] = []
    began = time.monotonic()
    try:
        await cluster.start()
        assert cluster.clean is not None
        subscribers = _subscribers(plan, cluster, browser)
        for subscriber in subscribers:
            await subscriber.start(CHANNEL)
        logs = {s.user: PublishLog() for s in subscribers if s.user is not None}
        each = plan.rate / 2 / plan.publishers
        for index in range(plan.publishers):
            envelope = EnvelopePublisher(log, CHANNEL, each, cluster.clean)
            http = HttpPublisher(log, CHANNEL, each, cluster.clean)
            if plan.publishers > 1:
                envelope.name, http.name = f"e{index}.", f"h{index}."
            publishers += [http, envelope]
            await envelope.open()
        directs: list[DirectPublisher] = []
        direct_rate = plan.rate / 2 if plan.direct_rate is None else plan.direct_rate
        for index in range(plan.publishers if logs else 0):
            direct = DirectPublisher(logs, direct_rate / plan.publishers, cluster.clean)
            if plan.publishers > 1:
                direct.name = f"d{index}."
            directs.append(direct)
        publishers += directs
        share = None if plan.messages is None else plan.messages // (2 * plan.publishers)
        publishing = [asyncio.create_task(p.run(share)) for p in publishers]
        done = asyncio.Event()
        faults = asyncio.create_task(_drive(cluster, schedule, report.windows, done, directs))
        sampling = asyncio.create_task(_sampleload_range(report.load))
        try:
            if plan.messages is None:
                await asyncio.sleep(plan.length)
                for publisher in publishers:
                    publisher.stop.set()
            await asyncio.gather(*publishing)
            done.set()  # a long run ends when its messages are out
            await faults
        finally:
            for task in [*publishing, faults, sampling]:
                task.cancel()
            await asyncio.gather(*publishing, faults, sampling, return_exceptions=True)
        channel = [p for p in publishers if p not in directs]
        report.attempted = sum(p.attempts for p in channel)
        finished = [p.ended for p in channel if p.ended is not None]
        starts = [p.began for p in channel if p.began is not None]
        report.publishing = max(finished) - min(starts) if finished and starts else 0.0
        await _settled(subscribers, log, logs, plan.settle)
        report.elapsed = time.monotonic() - began
        report.published = sum(p.confirmed for p in channel)
        records = [s.record for s in subscribers]
        log.learn(records)
        ends = [end for _, end in report.windows]
        report.direct_logs = logs
        for subscriber in subscribers:
            report.channel[subscriber.label] = check(subscriber.record, log)
            report.transports[subscriber.label] = subscriber.transports
            if not report.channel[subscriber.label].holds and subscriber.describe():
                report.states.append(subscriber.describe())
            report.recovery += recovery_times(subscriber.record, log, ends)
        for subscriber in subscribers:
            if subscriber.user is not None:
                report.direct[subscriber.label] = check(subscriber.direct, logs[subscriber.user])
                state = subscriber.describe()
                if not report.direct[subscriber.label].holds and state not in report.states:
                    report.states.append(state)
        for proxy in cluster.faulty:
            for name, count in proxy.counts.items():
                report.proxy[name] = report.proxy.get(name, 0) + count
    finally:
        for subscriber in subscribers:
            await subscriber.stop()
        for publisher in publishers:
            await publisher.close()
        await cluster.close()
        for index, node in enumerate(cluster.nodes):
            for line in node.output:
                text = line.decode(errors="replace").rstrip()
                if any(word in text.lower() for word in ("warning", "error", "traceback")):
                    report.node_log.append(f"node {index}: {text}")
    return report
