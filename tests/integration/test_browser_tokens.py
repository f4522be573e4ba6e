"""pushwire.js's tokens in real Chromium, over each of its six transports, against a server
with JWT authentication and `jwt_leeway=0`: with `getToken` a token is refreshed before it
expires and the connection lives on; without, the connection is closed with 4005 at the
expiry; a refresh the server refuses (another user's token) leaves the old expiry, after
which the client comes back, with a new token, to the same session. (The server side of
each, and the resumptions refused, on the wire: test_token_expiry.py.)"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from pushwire.core.expiry import SWEEP_INTERVAL
from tests.servers import ServerProcess, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SECRET = "the secret of the browser token tests, long enough"
API_KEY = "the-api-key-of-the-browser-token-tests"
TRANSPORTS = ["websocket", "sse", "stream", "iframe", "longpoll", "polling"]
WAIT_MS = 15_000
#: Seconds a token lives in these tests.
LIFETIME = 2.0
#: How late past its token's expiry a connection may be closed: a sweep, and the time to
#: reach the page (polling every 50 ms, reconnecting within 200 ms).
LATE = SWEEP_INTERVAL + 0.8
FAST = {"pollInterval": 50, "reconnectDelay": 50, "reconnectDelayMax": 200}

HELPERS = r"""
// A Pushwire connection whose events are recorded in window.events, with the wall-clock
// time (seconds) each came at; `refresh` = [users, lifetime]: getToken gives tokens for
// users[0], users[1], ... (the last one from then on), minted by the test (mintToken).
window.tokenClient = function (url, options, refresh) {
  window.events = [];
  window.messages = [];
  window.asked = [];
  const chosen = Object.assign({}, options);
  if (refresh) {
    const [users, lifetime] = refresh;
    chosen.getToken = async () => {
      const user = users[Math.min(window.asked.length, users.length - 1)];
      window.asked.push(user);
      return await window.mintToken(user, lifetime);
    };
  }
  const pw = new Pushwire(url, chosen);
  window.pw = pw;
  const types = ['open', 'close', 'error', 'reconnecting', 'reconnected', 'expired',
                 'servererror', 'transport'];
  for (const type of types) {
    pw.addEventListener(type, (e) => window.events.push({
      type, at: Date.now() / 1000, session: pw.session, transport: pw.transport,
      code: e.code === undefined ? null : e.code,
    }));
  }
  pw.addEventListener('message', (e) => window.messages.push(e.data));
  return new Promise((resolve, reject) => {
    pw.addEventListener('open', () => resolve({session: pw.session, user: pw.user}));
    pw.addEventListener('close', (e) => reject(new Error('closed ' + e.code)));
  });
};
"""


def token(user: str, lifetime: float = LIFETIME) -> tuple[str, float]:
    """A connection token for `user` and its `exp`."""
    expires = time.time() + lifetime
    return jwt.encode({"sub": user, "exp": expires}, SECRET, "HS256"), expires


@pytest.fixture(scope="module")
def secured() -> Iterator[ServerProcess]:
    server = start_server("--jwt-secret", SECRET, "--api-key", API_KEY, "--set", "jwt_leeway=0")
    yield server
    server.stop()


@contextmanager
def token_page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    """A page on the server's origin with pushwire.js, the helpers, and `mintToken(user,
    lifetime)`, which the test answers with a fresh token."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url("/healthz"))
        page.expose_function("mintToken", lambda user, lifetime: token(user, lifetime)[0])
        page.add_script_tag(url=server.url("/pushwire.js"))
        page.add_script_tag(content=HELPERS)
        yield page
    finally:
        context.close()


def publish(server: ServerProcess, channel: str, text: str) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    conn.request("POST", f"/api/publish/{channel}", body=text.encode(), headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200


def start(
    page: Page, server: ServerProcess, transport: str, first: str, refresh: Any = None
) -> dict[str, Any]:
    options = {**FAST, "transports": [transport], "token": first}
    opened: dict[str, Any] = page.evaluate(
        "([url, options, refresh]) => tokenClient(url, options, refresh)",
        [server.url("/pushwire"), options, refresh],
    )
    return opened


def events(page: Page) -> list[tuple[str, Any]]:
    return [(event["type"], event["code"]) for event in page.evaluate("() => events")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_page_with_get_token_stays_connected_past_its_first_tokens_expiry(
    browser: Browser, secured: ServerProcess, transport: str
) -> None:
    user = f"page-{transport}"
    first, expires = token(user)
    with token_page(browser, secured) as page:
        opened = start(page, secured, transport, first, [[user], LIFETIME])
        assert opened["user"] == user
        page.evaluate("(channel) => pw.subscribe(channel)", user)
        page.wait_for_function("() => asked.length >= 1")
        # Still open after the first token's expiry and a sweep: only waiting shows it.
        page.wait_for_timeout(max(0.0, expires + LATE - time.time()) * 1000)
        publish(secured, user, "after the first token's expiry")
        page.wait_for_function("() => messages.length === 1")
        assert page.evaluate("() => [messages, pw.readyState, pw.session]") == [
            ["after the first token's expiry"],
            1,
            opened["session"],
        ]
        assert events(page) == [("transport", None), ("open", None)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_page_without_get_token_is_closed_with_4005_when_its_token_expires(
    browser: Browser, secured: ServerProcess, transport: str
) -> None:
    first, expires = token(f"stale-page-{transport}")
    with token_page(browser, secured) as page:
        start(page, secured, transport, first)
        page.wait_for_function("() => pw.readyState === 3", timeout=(LIFETIME + 10) * 1000)
        closed = page.evaluate("() => events.filter((e) => e.type === 'close')")
        recorded = events(page)
    assert recorded == [
        ("transport", None),
        ("open", None),
        ("servererror", "token_expired"),  # the app is told why
        ("close", 4005),
    ]
    assert expires <= closed[0]["at"] <= expires + LATE


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_refresh_keeps_the_old_expiry_then_the_page_comes_back_with_a_new_token(
    browser: Browser, secured: ServerProcess, transport: str
) -> None:
    user = f"mixed-page-{transport}"
    first, expires = token(user)
    with token_page(browser, secured) as page:
        opened = start(page, secured, transport, first, [["mallory", user], 30])
        page.evaluate("(channel) => pw.subscribe(channel)", user)
        page.wait_for_function(
            "() => events.some((e) => e.type === 'reconnected')",
            timeout=(LIFETIME + 10) * 1000,
        )
        recorded = page.evaluate("() => events")
        publish(secured, user, "still subscribed")
        page.wait_for_function("() => messages.length === 1")
        assert page.evaluate("() => asked") == ["mallory", user]
    assert [(event["type"], event["code"]) for event in recorded] == [
        ("transport", None),
        ("open", None),
        ("servererror", "unauthorized"),  # the refresh with mallory's token
        ("reconnecting", 4005),  # at the old expiry
        ("reconnected", None),
    ]
    reconnecting = recorded[3]
    assert expires <= reconnecting["at"] <= expires + LATE
    assert recorded[4]["session"] == opened["session"]  # the same session, resumed
