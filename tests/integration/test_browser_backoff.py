"""pushwire.js in Chromium backs off when the server says so (issue 15): close 4029 waits
what the `error` before it said (`retry_after`), an HTTP 429 its `Retry-After`, with no other
transport tried meanwhile; each is told to the page as a `backoff` event; a first
connection refused so ends with `close` 4029. Real servers with tight limits; the waits
asserted are lower bounds. (A module of its own: the browser fixture's sync API owns an
event loop while it lives.)"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 30_000

# Every event of a Pushwire, with its time (ms) and what a backoff or close says.
RECORD = r"""
([url, options]) => {
  const pw = new Pushwire(url, options);
  const log = [];
  window.record = {pw, log};
  for (const type of ['open', 'reconnecting', 'reconnected', 'backoff', 'close']) {
    pw.addEventListener(type, (e) => log.push({
      type, at: performance.now(), code: e.code, retryAfter: e.retryAfter,
      reason: e.reason, transport: pw.transport,
    }));
  }
  return true;
}
"""

UNTIL = r"""
([type, count]) => new Promise((resolve) => {
  const check = () => {
    const found = window.record.log.filter((e) => e.type === type);
    if (found.length >= count) resolve(window.record.log);
    else setTimeout(check, 20);
  };
  check();
})
"""


@contextmanager
def open_page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url("/healthz"))
        page.add_script_tag(url=server.url("/pushwire.js"))
        yield page
    finally:
        context.close()


def until(page: Page, kind: str, count: int = 1) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = page.evaluate(UNTIL, [kind, count])
    return log


def of(log: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in log if event["type"] == kind]


def poll_hello(server: ServerProcess) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/pushwire/polling", body=b'{"type":"hello"}')
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_close_4029_waits_what_its_error_said(
    browser: Browser, server_factory: ServerFactory
) -> None:
    # The hello and one message fill the burst; the next is dropped with `error`
    # `rate_limited`, `retry_after` 4; the one after closes the connection with 4029.
    server = server_factory(
        "--set", "messages_per_second=0.25", "--set", "message_burst=2",
        "--set", "rate_limit_strikes=1",
    )  # fmt: skip
    with open_page(browser, server) as page:
        page.evaluate(RECORD, [server.ws_url("/pushwire"), {"transports": ["websocket"]}])
        until(page, "open")
        page.evaluate("for (const t of ['a', 'b', 'c']) window.record.pw.send(t)")
        log = until(page, "reconnected")
        (backoff,) = of(log, "backoff")
        assert (backoff["code"], backoff["retryAfter"]) == (4029, 4)
        assert of(log, "reconnected")[0]["at"] - backoff["at"] >= 4000 - 5  # timer rounding


def test_a_429_at_reconnection_is_waited_out_by_every_transport(
    browser: Browser, server_factory: ServerFactory
) -> None:
    # One handshake every 4 s. The first message breaks the session's rate: close 4029 (no
    # error first: 1 s); the attempt after it gets 429 + Retry-After (3 s or so), and no
    # other transport is tried before that has passed.
    server = server_factory(
        "--set", "handshakes_per_ip=0.25", "--set", "handshake_burst=1",
        "--set", "messages_per_second=0.25", "--set", "message_burst=1",
        "--set", "rate_limit_strikes=0",
    )  # fmt: skip
    with open_page(browser, server) as page:
        options = {"transports": ["stream", "longpoll"]}
        page.evaluate(RECORD, [server.url("/pushwire"), options])
        until(page, "open")
        page.evaluate("window.record.pw.send('over')")
        log = until(page, "reconnected")
        closed, refused = of(log, "backoff")[:2]
        assert (closed["code"], closed["retryAfter"]) == (4029, 1)
        assert refused["code"] == 4029 and "HTTP 429" in refused["reason"]
        assert 1 <= refused["retryAfter"] <= 4
        assert refused["at"] - closed["at"] >= 1000 - 5
        back = of(log, "reconnected")[0]
        assert back["at"] - refused["at"] >= refused["retryAfter"] * 1000 - 5
        assert back["transport"] == "stream"  # the round went on from where it was refused


@pytest.mark.parametrize("transport", ["stream", "longpoll", "polling"])
def test_a_first_connection_refused_with_429_ends_with_4029(
    browser: Browser, server_factory: ServerFactory, transport: str
) -> None:
    server = server_factory("--set", "handshakes_per_ip=0.1", "--set", "handshake_burst=1")
    assert poll_hello(server) == 200  # at the bound
    with open_page(browser, server) as page:  # one over
        page.evaluate(RECORD, [server.url("/pushwire"), {"transports": [transport, "sse"]}])
        log = until(page, "close")
        (backoff,) = of(log, "backoff")
        assert backoff["code"] == 4029 and 1 <= backoff["retryAfter"] <= 10
        assert of(log, "close")[0]["code"] == 4029
        assert not of(log, "open")
