"""pushwire.js on long-poll behind a round-robin proxy over two nodes on one Redis, in real
Chromium: consecutive polls on alternating nodes, polls answered 503 retried with the same
cursor, nothing lost or repeated. (A module of its own: the browser fixture's sync API owns
an event loop while it lives, and the other no-stickiness tests are asyncio tests.)"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.scaleout_helpers import RoundRobinProxy
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 15_000

CONNECT = r"""
([url, options]) => new Promise((resolve, reject) => {
  const pw = new Pushwire(url, options);
  window.pw = pw;
  window.events = [];
  window.messages = [];
  for (const type of ['open', 'close', 'reconnecting', 'reconnected', 'expired', 'gap']) {
    pw.addEventListener(type, () => window.events.push(type));
  }
  pw.addEventListener('message', (e) => window.messages.push(
    {data: e.data, channel: e.channel, offset: e.offset}));
  pw.addEventListener('open', () => resolve(pw.session));
  pw.addEventListener('close', (e) => reject(new Error('closed ' + e.code)));
})
"""


class ThreadedProxy:
    """A `RoundRobinProxy` on an event loop of its own, in a thread."""

    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = RoundRobinProxy(nodes)
        self._call(self.proxy.start())

    def _call(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(15)

    def close(self) -> None:
        self._call(self.proxy.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def post(node: ServerProcess, path: str, body: bytes) -> Any:
    request = urllib.request.Request(node.url(path), data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def nodes(server_factory: ServerFactory, redis_server: RedisServer) -> list[ServerProcess]:
    return [
        server_factory("--broker", redis_server.url, "--set", "longpoll_timeout=1")
        for _ in range(2)
    ]


@pytest.fixture
def threaded_proxy(nodes: list[ServerProcess]) -> Iterator[ThreadedProxy]:
    instance = ThreadedProxy(nodes)
    yield instance
    instance.close()


def test_pushwire_js_long_polls_alternating_nodes_and_retries_503_with_its_cursor(
    browser: Browser, nodes: list[ServerProcess], threaded_proxy: ThreadedProxy
) -> None:
    proxy = threaded_proxy.proxy
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(nodes[0].url("/healthz"))
        page.add_script_tag(url=nodes[0].url("/pushwire.js"))
        options = {"transports": ["longpoll"], "user": "erin", "reconnectDelay": 50}
        session = page.evaluate(CONNECT, [proxy.url("/pushwire"), options])
        page.evaluate("() => pw.subscribe('room')")
        expected = []
        for i in range(20):
            post(nodes[i % 2], "/api/publish/room", f"m{i}".encode())
            expected.append(f"m{i}")
            if i == 9:
                page.wait_for_function("() => messages.length >= 10")
                proxy.refuse = ("GET /pushwire/longpoll?cursor=", 3)
                # Sent on one node, it reaches the one node that holds the session.
                assert post(nodes[0], "/api/send/erin", b"direct")["nodes"] == 1
        page.wait_for_function("() => messages.length >= 21")
        post(nodes[1], "/api/publish/room", b"the end")
        page.wait_for_function("() => messages.length >= 22")
        messages = page.evaluate("() => messages")
        events = page.evaluate("() => events")
        assert page.evaluate("() => pw.session") == session
    finally:
        context.close()
    channel = [m["data"] for m in messages if m["channel"] == "room"]
    assert channel == [*expected, "the end"]  # each once, in order
    assert [(m["offset"], m["data"]) for m in messages if m["channel"] is None] == [(1, "direct")]
    assert events == ["open"]  # no reconnection: 503s were retried, not resumed
    polls = [
        (index, line) for index, line, _ in proxy.log if "GET /pushwire/longpoll?cursor=" in line
    ]
    assert {index for index, _ in polls if index >= 0} == {0, 1}
    refused = [n for n, (index, _) in enumerate(polls) if index == -1]
    assert len(refused) == 3
    cursor = re.compile(r"cursor=(\d+)")
    for n in refused:  # asked again with the same cursor
        assert cursor.findall(polls[n + 1][1]) == cursor.findall(polls[n][1])
