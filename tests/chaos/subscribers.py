"""Subscribers that write what their client yields into the ledger: the Python client on any
of its transports, and pushwire.js in Chromium (driven with Playwright's async API, in the
same event loop as the proxy)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Final

from pushwire.client import Client, ClientError, Failure, Gap

from .ledger import Got, Hole, Record, Stopped, last_position

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

__all__ = ["BrowserSubscriber", "PythonSubscriber", "Subscriber"]

STOP_TIMEOUT: Final = 5.0


class Subscriber:
    """One client subscribed to one channel (and, with a user, its direct messages: the
    user's inbox, from the position its client was welcomed at)."""

    def __init__(self, label: str, user: str | None) -> None:
        self.label = label
        self.user = user
        self.record = Record(label)
        self.direct = Record(f"{label} direct")
        #: The sessions its client said were replaced by a new one (not a loss: direct
        #: messages come from the inbox all the same).
        self.expired: list[str] = []
        #: The transports it received messages over (a transport switch shows here).
        self.transports: set[str] = set()
        #: What its client reported as failed for good (`Failure`, `error` events).
        self.failures: list[str] = []

    @property
    def last(self) -> tuple[str, int] | None:
        """The last position of the channel it has (received, or skipped by a gap)."""
        return last_position(self.record)

    async def start(self, channel: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """Its client's state, for a report (what to look at when it lost something)."""
        return ""

    async def stop(self) -> None:
        raise NotImplementedError


class PythonSubscriber(Subscriber):
    """The Python client, reconnecting quickly (the faults are short)."""

    def __init__(
        self, label: str, url: str, transports: list[str], user: str | None = None
    ) -> None:
        super().__init__(label, user)
        self.client = Client(
            url,
            user=user,
            transports=transports,
            reconnect_delay=0.05,
            reconnect_delay_max=1.0,
            connect_timeout=3.0,
            request_timeout=5.0,
            poll_interval=0.2,
        )
        self._reading: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, channel: str) -> None:
        await self.client.open()
        self.direct.start = self.client.inbox_position if self.user is not None else None
        subscription = await self.client.subscribe(channel)
        self.record.start = (subscription.epoch, subscription.offset)
        self._reading = asyncio.create_task(self._read())

    def describe(self) -> str:
        client = self.client
        last = self.record.items[-1].at if self.record.items else None
        quiet = f", last item {time.time() - last:.1f} s ago" if last is not None else ""
        return (
            f"{self.label}: on {client.transport}, session {client.session}, "
            f"{client.reconnections} reconnections, expired {client.expired}, "
            f"failures {self.failures}{quiet}"
        )

    async def _read(self) -> None:
        items, direct = self.record.items, self.direct.items
        async for item in self.client:
            now = time.time()
            self.transports.add(self.client.transport)
            if isinstance(item, Failure):
                self.failures.append(f"{item.operation} {item.code}: {item.message}")
                if item.operation == "subscribe" and self.last is not None:
                    self.record.stopped = Stopped(now, self.last, self.failures[-1])
            elif isinstance(item, Gap):
                start = (item.from_epoch, item.from_offset)
                hole = Hole(now, start, (item.to_epoch, item.to_offset))
                (items if item.channel is not None else direct).append(hole)
            elif item.epoch is not None and item.offset is not None:
                got = Got(now, item.epoch, item.offset, str(item.data))
                (items if item.channel is not None else direct).append(got)
        if not self._stopping:  # the client ended by itself: what it said, for the report
            try:
                await self.client.recv()
            except ClientError as exc:
                self.failures.append(f"the client ended: {exc!r}")

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(TimeoutError, ClientError):
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.client.close()
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        self.expired = list(self.client.expired)


# What a page runs: one Pushwire, every event it fires kept until Python drains them.
PAGE_SCRIPT: Final = r"""
window.__items = [];
window.startSubscriber = async ([url, transports, channel, user]) => {
  const now = () => Date.now() / 1000;
  const pw = new Pushwire(url, {
    transports, user, reconnectDelay: 50, reconnectDelayMax: 1000, connectTimeout: 3000,
    pollInterval: 200,
  });
  window.__pushwire = pw;
  pw.addEventListener('message', (e) => {
    if (e.epoch === null) return;  // an echo
    const kind = e.channel !== null ? 'm' : 'd';
    __items.push([kind, now(), e.epoch, e.offset, String(e.data)]);
  });
  pw.addEventListener('gap', (e) => {
    const kind = e.channel !== null ? 'g' : 'h';
    __items.push([kind, now(), e.from.epoch, e.from.offset, e.to.epoch, e.to.offset]);
  });
  pw.addEventListener('expired', (e) => __items.push(['x', now(), String(e.session)]));
  pw.addEventListener('transport', (e) => __items.push(['t', now(), String(e.transport)]));
  pw.addEventListener('reconnected', () => __items.push(['r', now()]));
  pw.addEventListener('error', (e) => {
    if (e.operation) __items.push(['f', now(), e.operation, e.code, e.message, e.channel]);
  });
  const subscription = await pw.subscribe(channel);
  const inbox = pw.inboxPosition;
  return [subscription.epoch, subscription.offset, inbox && [inbox.epoch, inbox.offset]];
};
window.drainItems = () => window.__items.splice(0);
"""


class BrowserSubscriber(Subscriber):
    """pushwire.js on a page of the proxy's origin, in a browser context of its own (its
    own connection pool: HTTP/1.1 allows 6 connections per host and profile)."""

    def __init__(
        self,
        label: str,
        browser: Browser,
        origin: str,
        transports: list[str],
        user: str | None = None,
    ) -> None:
        super().__init__(label, user)
        self.browser = browser
        self.origin = origin
        self.wanted = transports
        self.user = user
        self.reconnections = 0
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self._draining: asyncio.Task[None] | None = None

    async def start(self, channel: str) -> None:
        self.context = await self.browser.new_context()
        page = self.page = await self.context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(f"{self.origin}/healthz")
        await page.add_script_tag(url=f"{self.origin}/pushwire.js")
        await page.add_script_tag(content=PAGE_SCRIPT)
        epoch, offset, inbox = await page.evaluate(
            "startSubscriber", [f"{self.origin}/pushwire", self.wanted, channel, self.user]
        )
        self.record.start = (str(epoch), int(offset))
        if self.user is not None and inbox is not None:
            self.direct.start = (str(inbox[0]), int(inbox[1]))
        self._draining = asyncio.create_task(self._drain_forever())

    async def _drain_forever(self) -> None:
        while True:
            await self.drain()
            await asyncio.sleep(0.1)

    async def drain(self) -> None:
        assert self.page is not None
        raw: list[list[Any]] = await self.page.evaluate("drainItems()")
        for entry in raw:
            kind, at = entry[0], float(entry[1])
            if kind in ("m", "d"):
                record = self.record if kind == "m" else self.direct
                record.items.append(Got(at, str(entry[2]), int(entry[3]), str(entry[4])))
            elif kind in ("g", "h"):
                record = self.record if kind == "g" else self.direct
                start = (str(entry[2]), int(entry[3]))
                record.items.append(Hole(at, start, (str(entry[4]), int(entry[5]))))
            elif kind == "t":
                self.transports.add(str(entry[2]))
            elif kind == "r":
                self.reconnections += 1
            elif kind == "f":
                self.failures.append(f"{entry[2]} {entry[3]}: {entry[4]}")
                if entry[2] == "subscribe" and self.last is not None:
                    self.record.stopped = Stopped(at, self.last, self.failures[-1])
            else:
                self.expired.append(str(entry[2]))

    async def stop(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
            await asyncio.gather(self._draining, return_exceptions=True)
        from playwright.async_api import Error as PlaywrightError

        if self.page is not None:
            with contextlib.suppress(TimeoutError, PlaywrightError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.drain()
                    await self.page.evaluate("window.__pushwire.close()")
        if self.context is not None:
            with contextlib.suppress(TimeoutError, PlaywrightError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.context.close()
