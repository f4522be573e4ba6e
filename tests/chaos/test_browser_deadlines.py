"""pushwire.js's HTTP requests have deadlines, in real Chromium through the fault proxy: a
poll whose answer never comes is abandoned after the hold the welcome announced and
`pollMargin`, and the page resumes, losing nothing; an upload (`POST E/send`) whose answer
never comes is abandoned after `sendTimeout` as a lost connection: a publish is sent again
with its idempotency key (published once), data from `send()` is not sent again (it
arrived once).

The nodes say `heartbeat: 60` here (`ping_interval`): pushwire.js's own liveness check
(a ping after one silent heartbeat, a drop after two) would find these faults only after
60-120 s, so what these tests see within their 30 s is the deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import pytest

from pushwire.client import Message, connect
from tests.chaos.proxy import FaultProxy
from tests.servers import ServerFactory

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS: Final = 30_000  # generous: a busy machine; the deadlines here are 1-2 s
SLOW_HEARTBEAT: Final = ("--set", "ping_interval=60")

CONNECT: Final = r"""
([url, options]) => new Promise((resolve, reject) => {
  const pw = new Pushwire(url, options);
  window.pw = pw;
  window.events = [];
  window.received = [];
  for (const type of ['reconnecting', 'reconnected', 'expired', 'gap', 'error', 'close']) {
    pw.addEventListener(type, () => window.events.push(type));
  }
  pw.addEventListener('message', (event) => window.received.push(event.data));
  pw.addEventListener('open', () => resolve(pw.transport));
  pw.addEventListener('close', (event) => reject(new Error('closed ' + event.code)));
})
"""


@asynccontextmanager
async def page_on(
    browser: Browser, proxy: FaultProxy, path: str, options: dict[str, Any]
) -> AsyncIterator[Page]:
    """A page of the proxy's origin with pushwire.js connected to `path` through it."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto(proxy.url("/healthz"))
        await page.add_script_tag(url=proxy.url("/pushwire.js"))
        quick = {"reconnectDelay": 50, "reconnectDelayMax": 200, "connectTimeout": 3000}
        transport = await page.evaluate(CONNECT, [proxy.url(path), {**quick, **options}])
        assert transport == options["transports"][0]
        yield page
    finally:
        await context.close()


async def evaluate(page: Page, expression: str) -> Any:
    """`expression`'s value in the page, within WAIT_MS (Playwright's evaluate has none)."""
    return await asyncio.wait_for(page.evaluate(expression), WAIT_MS / 1000)


async def received_until(page: Page, last: str) -> list[str]:
    """What the page received, once `last` is among it."""
    await page.wait_for_function("(last) => window.received.includes(last)", arg=last)
    received: list[str] = await page.evaluate("window.received")
    return received


@pytest.mark.parametrize("transport", ["longpoll", "polling"])
async def test_a_poll_whose_answer_never_comes_is_abandoned_and_resumed_losing_nothing(
    browser: Browser, server_factory: ServerFactory, transport: str
) -> None:
    """Before the deadline the page waited for the frozen poll until its heartbeat gave up
    on it (two of them without an envelope): the messages published meanwhile waited too."""
    server = server_factory("--set", "longpoll_timeout=1", *SLOW_HEARTBEAT)
    proxy = FaultProxy([(server.host, server.port)], seed=11)
    await proxy.start()
    try:
        options = {"transports": [transport], "pollMargin": 1000, "pollInterval": 50}
        async with (
            page_on(browser, proxy, "/pushwire", options) as page,
            connect(server.url("/pushwire"), transports=["websocket"]) as publisher,
        ):
            await page.evaluate("window.pw.subscribe('feed')")
            sent = [f"m{i}" for i in range(40)]
            for data in sent[:20]:
                await publisher.publish("feed", data)
            await received_until(page, sent[19])
            assert proxy.freeze() >= 1  # the poll (and any idle connection) go silent
            for data in [*sent[20:], "end"]:
                await publisher.publish("feed", data)
            received = await received_until(page, "end")
            events: list[str] = await page.evaluate("window.events")
            assert await page.evaluate("window.pw.transport") == transport
        assert received == [*sent, "end"]  # each once, in order
        assert "reconnecting" in events  # the abandoned poll was a lost connection
        assert "gap" not in events and "expired" not in events
    finally:
        await proxy.stop()


@pytest.mark.parametrize("transport", ["longpoll", "sse", "stream", "iframe"])
async def test_a_publish_whose_upload_is_never_answered_is_sent_again_and_published_once(
    browser: Browser, server_factory: ServerFactory, transport: str
) -> None:
    """The upload reaches the server (the message is stored), its answer never comes back.
    Before the deadline the publish waited, and every envelope behind it, pings included."""
    server = server_factory(*SLOW_HEARTBEAT)
    proxy = FaultProxy([(server.host, server.port)], seed=12)
    await proxy.start()
    try:
        options = {"transports": [transport], "sendTimeout": 1000}
        async with (
            page_on(browser, proxy, "/pushwire", options) as page,
            connect(server.url("/pushwire"), transports=["websocket"]) as reader,
        ):
            await reader.subscribe("feed")
            proxy.freeze_after = b'"type":"publish"'
            answer = await evaluate(page, "window.pw.publish('feed', 'once')")
            assert proxy.counts["frozen"] == 1
            await evaluate(page, "window.pw.publish('feed', 'end')")
            received = [await asyncio.wait_for(reader.recv(), WAIT_MS / 1000) for _ in range(2)]
            events: list[str] = await page.evaluate("window.events")
        messages = [item for item in received if isinstance(item, Message)]
        assert [message.data for message in messages] == ["once", "end"]  # not twice
        first = messages[0]
        assert (first.epoch, first.offset) == (answer["epoch"], answer["offset"])
        assert "reconnecting" in events  # the abandoned upload was a lost connection
    finally:
        await proxy.stop()


async def test_data_whose_upload_is_never_answered_is_not_sent_again(
    browser: Browser, server_factory: ServerFactory
) -> None:
    """`send()` has no answer to wait for: once its upload is abandoned it is not sent again
    (the server took it: it would arrive twice), and what the page sends next goes on."""
    server = server_factory(*SLOW_HEARTBEAT)
    proxy = FaultProxy([(server.host, server.port)], seed=13)
    await proxy.start()
    try:
        options = {"transports": ["longpoll"], "sendTimeout": 1000}
        async with page_on(browser, proxy, "/echo", options) as page:
            await page.evaluate("window.pw.send('first')")
            await received_until(page, "first")
            proxy.freeze_after = b"taken, never answered"
            await page.evaluate("window.pw.send('taken, never answered')")
            await page.wait_for_function("window.events.includes('reconnected')")
            await page.evaluate("window.pw.send('end')")
            received = await received_until(page, "end")
        assert received == ["first", "taken, never answered", "end"]
        assert proxy.counts["frozen"] == 1
    finally:
        await proxy.stop()
