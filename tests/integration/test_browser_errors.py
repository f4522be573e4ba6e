"""pushwire.js in Chromium when Redis is down (issue 14, problem 1 in the browser): a
re-subscription answered `unavailable` after a resumption is retried until Redis is back, or
given up with an `error` event; a publish answered `unavailable` is retried with its
idempotency key and published once. (A module of its own: the browser fixture's sync API
owns an event loop while it lives.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.cut_proxy import CutProxy
from tests.integration.scaleout_helpers import publish_http
from tests.redis_helpers import RedisServer, running_redis
from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 20_000

CONNECT = r"""
([name, url, options]) => new Promise((resolve, reject) => {
  const pw = new Pushwire(url, options);
  const record = {pw, events: [], errors: [], messages: []};
  window[name] = record;
  for (const type of ['open', 'reconnecting', 'reconnected', 'expired', 'gap', 'close']) {
    pw.addEventListener(type, () => record.events.push(type));
  }
  pw.addEventListener('error', (e) => record.errors.push(
    {operation: e.operation, channel: e.channel, code: e.code, attempts: e.attempts}));
  pw.addEventListener('message', (e) => record.messages.push(e.data));
  pw.addEventListener('open', () => pw.subscribe('news').then(() => resolve(pw.session)));
  pw.addEventListener('close', (e) => reject(new Error('closed ' + e.code)));
})
"""


class ThreadedCutProxy:
    """A `CutProxy` on an event loop of its own, in a thread (the page's calls block)."""

    def __init__(self, node: ServerProcess) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = CutProxy(node.host, node.port)
        self._call(self.proxy.start())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(15)

    def cut(self) -> int:
        async def cut() -> int:
            return self.proxy.cut()

        count: int = self._call(cut())
        return count

    def close(self) -> None:
        self._call(self.proxy.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path, persistent=True) as server:
        yield server


def publish_until_accepted(node: ServerProcess, channel: str, text: str) -> None:
    deadline = time.monotonic() + 20
    while publish_http(node, channel, text.encode())[0] != 200:
        assert time.monotonic() < deadline, "the node never took a publish again"
        time.sleep(0.05)


@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
def test_pushwire_js_retries_a_refused_resubscription_or_fires_error(
    browser: Browser,
    server_factory: ServerFactory,
    persistent_redis: RedisServer,
    transport: str,
) -> None:
    node = server_factory("--broker", persistent_redis.url)
    proxy = ThreadedCutProxy(node)
    url = f"http://127.0.0.1:{proxy.proxy.port}/pushwire"
    common = {"transports": [transport], "reconnectDelay": 50, "reconnectDelayMax": 200}
    keeper = {**common, "retry": {"attempts": 200, "delay": 100, "delayMax": 300}}
    quitter = {**common, "retry": {"attempts": 3, "delay": 50, "delayMax": 100}}
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(node.url("/healthz"))
        page.add_script_tag(url=node.url("/pushwire.js"))
        page.evaluate(CONNECT, ["keeper", url, keeper])
        page.evaluate(CONNECT, ["quitter", url, quitter])
        publish_until_accepted(node, "news", "before")
        page.wait_for_function("() => keeper.messages.length === 1 && quitter.messages.length")

        persistent_redis.stop()
        assert proxy.cut() >= 2
        # Both resume; each re-subscription is answered `unavailable`. The quitter gives up.
        page.wait_for_function("() => quitter.errors.length === 1")
        # A publish while Redis is down: answered `unavailable`, retried with its key.
        page.evaluate(
            "() => { window.published = null; keeper.pw.publish('news', 'while down')"
            ".then((answer) => { window.published = answer; }) }"
        )
        persistent_redis.start()
        publish_until_accepted(node, "news", "after")
        page.wait_for_function(
            "() => window.published !== null && keeper.messages.includes('after')"
            " && keeper.messages.includes('while down')"
        )
        keeper_state, quitter_state = page.evaluate(
            "() => [keeper, quitter].map((r) => ({events: r.events, errors: r.errors,"
            " messages: r.messages, channels: [...r.pw._channels.keys()]}))"
        )
    finally:
        context.close()
        proxy.close()
    assert quitter_state["errors"] == [
        {"operation": "subscribe", "channel": "news", "code": "unavailable", "attempts": 3}
    ]
    assert quitter_state["channels"] == []  # no longer subscribed, and the app was told
    assert keeper_state["errors"] == []
    assert "gap" not in keeper_state["events"]
    assert keeper_state["messages"][0] == "before"
    assert sorted(keeper_state["messages"][1:]) == ["after", "while down"]  # once each
