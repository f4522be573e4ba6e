"""A page on another site, in real Chromium, gets nothing from pushwire: not over WebSocket,
not over the HTTP transports (CORS), not through the iframe transport, whatever `origin=` it
names (its own, or one that hides its host behind `localhost:x@`, the issue 13 finding).

The attacker's page is `http://evil.example/`, served on a second loopback port by a plain
Python HTTP server that is the browser's proxy. Not a page on `127.0.0.1:<port>`: loopback
origins on any port are allowed by default (pages of the developer's own machine), and a
foreign site's page never has one. Port 80, as the issue's: an origin with the default port
is the one the old `split(":")` took for loopback.

Meanwhile the user the page claims to be has a real session, and a direct message sent to
that user over `POST /api/send/<user>` reaches that session and never the page.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_ARGS
from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 15_000
FOREIGN_ORIGIN = "http://evil.example"
USER = "alice"
SECRET = "for alice only"

#: The endpoints a foreign page gets nothing from. (`/echo` takes every Origin, as the seed's
#: echo example needs, and gives a foreign page an echo and nothing else: see the last test.)
ENDPOINTS_CLOSED_TO_OTHER_ORIGINS = ["/pushwire", "/ws/room"]

# Each attempt resolves with how it ended; whatever any of them is given lands in `received`.
ATTEMPTS = r"""
window.received = [];
window.addEventListener('message', (e) => {
  received.push(['postMessage', e.origin, JSON.stringify(e.data)]);
});
const hello = JSON.stringify({type: 'hello', user: $USER});

window.tryWebSocket = function (url) {
  return new Promise((resolve) => {
    const trace = [];
    const socket = new WebSocket(url, 'pushwire.v1');
    socket.onopen = () => { trace.push('open'); socket.send(hello); };
    socket.onmessage = (e) => received.push(['websocket', url, String(e.data)]);
    socket.onerror = () => trace.push('error');
    socket.onclose = (e) => { trace.push('close ' + e.code); resolve(trace); };
  });
};

window.tryFetch = async function (url, init) {
  let response;
  try {
    response = await fetch(url, {credentials: 'include', ...init});
  } catch (e) {
    return 'refused: ' + e.name;
  }
  // Read the first piece only: a stream that was let in would never end.
  const reader = response.body.getReader();
  const first = await reader.read();
  received.push(['fetch', url, response.status, new TextDecoder().decode(first.value)]);
  reader.cancel();
  return 'answered ' + response.status;
};

window.tryEventSource = function (url) {
  return new Promise((resolve) => {
    const source = new EventSource(url, {withCredentials: true});
    source.onmessage = (e) => received.push(['eventsource', url, e.data]);
    source.onerror = () => { const state = source.readyState; source.close(); resolve(state); };
  });
};

// The iframe transport's answer to a refused target is a whole (403) document: it loads.
// One that was let in streams forever and posts its first envelope: that ends the wait too.
window.tryIframe = function (url) {
  return new Promise((resolve) => {
    const frame = document.createElement('iframe');
    frame.onload = () => resolve('loaded');
    window.addEventListener('message', () => resolve('posted'), {once: true});
    frame.src = url;
    document.body.appendChild(frame);
  });
};
""".replace("$USER", json.dumps(USER))

# The user's own session, on the server's own origin.
OWN_SESSION = r"""
window.own = [];
window.ownSession = function (url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, 'pushwire.v1');
    socket.onopen = () => socket.send(JSON.stringify({type: 'hello', user: $USER}));
    socket.onmessage = (e) => {
      const envelope = JSON.parse(e.data);
      own.push(envelope);
      if (envelope.type === 'welcome') resolve(envelope.type);
    };
    socket.onclose = (e) => reject(new Error('closed ' + e.code));
  });
};
""".replace("$USER", json.dumps(USER))


@pytest.fixture(scope="module")
def foreign_site() -> Iterator[int]:
    """A plain HTTP server on a second loopback port, serving a blank page for any URL: the
    browser's proxy, it answers `http://evil.example/` (the port of this module's browser)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def foreign_browser(foreign_site: int) -> Iterator[Browser]:
    """Chromium (the flags of the other browser tests) whose proxy is `foreign_site`, so that
    `http://evil.example` (port 80, as the issue's page) is a page on a loopback port.

    Chromium sends no loopback request through a proxy: pushwire is reached directly.
    (`--proxy-server`, not Playwright's `proxy` option, which proxies loopback too.)
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    args = [*CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{foreign_site}"]
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield instance
        finally:
            instance.close()


@contextmanager
def page_at(browser: Browser, url: str, script: str) -> Iterator[Page]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.add_script_tag(content=script)
        yield page
    finally:
        context.close()


def send_direct(server: ServerProcess, user: str, text: str) -> Any:
    request = urllib.request.Request(
        server.url(f"/api/send/{user}"),
        data=text.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stats(server: ServerProcess) -> Any:
    with urllib.request.urlopen(server.url("/api/stats"), timeout=10) as response:
        return json.loads(response.read())


def attack(page: Page, server: ServerProcess, endpoint: str) -> dict[str, Any]:
    """Every way in a foreign page has at `endpoint`; returns how each ended."""
    hello = urllib.parse.quote(json.dumps({"type": "hello", "user": USER}))
    base = server.url(endpoint)
    ws_base = server.ws_url(endpoint)
    # The parent postMessage delivers to is the host after the '@': evil.example.
    iframe_targets = {
        "own origin": FOREIGN_ORIGIN,
        "userinfo trick": "http://localhost:x@evil.example",
        "userinfo trick, loopback first": f"http://127.0.0.1:{server.port}@evil.example",
    }
    outcomes: dict[str, Any] = {"websocket": page.evaluate("(url) => tryWebSocket(url)", ws_base)}
    for kind in ("polling", "longpoll", "stream", "sse"):
        outcomes[f"fetch {kind}"] = page.evaluate(
            "(url) => tryFetch(url)", f"{base}/{kind}?hello={hello}"
        )
    for kind in ("polling", "longpoll", "stream"):  # opened by a POST, as the clients do
        outcomes[f"fetch {kind} (POST)"] = page.evaluate(
            "([url, body]) => tryFetch(url, {method: 'POST', body: body})",
            [f"{base}/{kind}", json.dumps({"type": "hello", "user": USER})],
        )
    outcomes["fetch send"] = page.evaluate(
        "(url) => tryFetch(url, {method: 'POST', body: '{}'})", f"{base}/send?session=x"
    )
    outcomes["eventsource sse"] = page.evaluate(
        "(url) => tryEventSource(url)", f"{base}/sse?hello={hello}"
    )
    for name, target in iframe_targets.items():
        url = f"{base}/iframe?hello={hello}&origin={urllib.parse.quote(target)}"
        outcomes[f"iframe, {name}"] = page.evaluate("(url) => tryIframe(url)", url)
    return outcomes


@pytest.mark.parametrize("endpoint", ENDPOINTS_CLOSED_TO_OTHER_ORIGINS)
def test_a_page_on_another_site_gets_nothing(
    foreign_browser: Browser, server: ServerProcess, endpoint: str
) -> None:
    with (
        page_at(foreign_browser, server.url("/healthz"), OWN_SESSION) as own,
        page_at(foreign_browser, FOREIGN_ORIGIN + "/", ATTEMPTS) as foreign,
    ):
        assert own.evaluate("(url) => ownSession(url)", server.ws_url("/pushwire")) == "welcome"
        outcomes = attack(foreign, server, endpoint)
        sent = send_direct(server, USER, SECRET)
        own.wait_for_function(
            "(text) => own.some((e) => e.type === 'message' && e.data === text)", arg=SECRET
        )
        counters = stats(server)
        received = foreign.evaluate("() => [location.origin, received]")
    assert received == [FOREIGN_ORIGIN, []]
    assert outcomes == {
        "websocket": ["error", "close 1006"],
        "fetch polling": "refused: TypeError",
        "fetch longpoll": "refused: TypeError",
        "fetch stream": "refused: TypeError",
        "fetch sse": "refused: TypeError",
        "fetch polling (POST)": "refused: TypeError",
        "fetch longpoll (POST)": "refused: TypeError",
        "fetch stream (POST)": "refused: TypeError",
        "fetch send": "refused: TypeError",
        "eventsource sse": 2,  # EventSource.CLOSED: not retried
        "iframe, own origin": "loaded",
        "iframe, userinfo trick": "loaded",
        "iframe, userinfo trick, loopback first": "loaded",
    }
    # The direct message reached the user's one session: none was opened by the page.
    assert (sent["user"], sent["nodes"], sent["sessions"]) == (USER, 1, 1)
    assert counters["sessions"] == 1
    assert counters["published"] == 0


def test_the_same_page_is_let_in_once_its_site_is_allowed(
    foreign_browser: Browser, server_factory: ServerFactory
) -> None:
    """The check above is the policy's, not the test's setup: with `--allow-origin` for the
    foreign page, the same attempts open sessions and the direct message arrives."""
    server = server_factory("--allow-origin", FOREIGN_ORIGIN)
    with page_at(foreign_browser, FOREIGN_ORIGIN + "/", ATTEMPTS) as foreign:
        trace = foreign.evaluate(
            """(url) => new Promise((resolve) => {
                const socket = new WebSocket(url, 'pushwire.v1');
                socket.onopen = () => socket.send(
                    JSON.stringify({type: 'hello', user: 'alice'}));
                socket.onmessage = (e) => {
                    received.push(['websocket', url, e.data]);
                    if (JSON.parse(e.data).type === 'welcome') resolve('welcome');
                };
                socket.onclose = (e) => resolve('closed ' + e.code);
            })""",
            server.ws_url("/pushwire"),
        )
        assert trace == "welcome"
        assert send_direct(server, USER, SECRET)["sessions"] == 1
        foreign.wait_for_function("(text) => received.some((r) => r[2].includes(text))", arg=SECRET)


ECHO_ATTEMPT = r"""
(urls) => new Promise((resolve) => {
  const seen = [];
  const enveloped = new WebSocket(urls[0], 'pushwire.v1');
  enveloped.onopen = () => {
    enveloped.send(JSON.stringify({type: 'hello', user: 'alice'}));
    enveloped.send(JSON.stringify({type: 'subscribe', id: 1, channel: 'room'}));
    enveloped.send(JSON.stringify({type: 'presence', id: 2, channel: 'room'}));
    enveloped.send(JSON.stringify({type: 'send', data: 'ping'}));
  };
  enveloped.onmessage = (e) => {
    const envelope = JSON.parse(e.data);
    seen.push(envelope);
    if (envelope.type === 'message' && envelope.data === 'ping') {
      const raw = new WebSocket(urls[1]);
      raw.onopen = () => raw.send('plain echo');
      raw.onmessage = (m) => { seen.push({raw: m.data}); resolve(seen); };
    }
  };
  enveloped.onclose = (e) => { seen.push({closed: e.code}); resolve(seen); };
})
"""


def test_a_page_on_another_site_gets_only_an_echo_from_echo(
    foreign_browser: Browser, server: ServerProcess
) -> None:
    with (
        page_at(foreign_browser, server.url("/healthz"), OWN_SESSION) as own,
        page_at(foreign_browser, FOREIGN_ORIGIN + "/", ATTEMPTS) as foreign,
    ):
        assert own.evaluate("(url) => ownSession(url)", server.ws_url("/pushwire")) == "welcome"
        seen = foreign.evaluate(ECHO_ATTEMPT, [server.ws_url("/echo"), server.ws_url("/echo")])
        sent = send_direct(server, USER, SECRET)
        own.wait_for_function(
            "(text) => own.some((e) => e.type === 'message' && e.data === text)", arg=SECRET
        )
        later = foreign.evaluate("() => received")
    welcome, *rest = seen
    assert (welcome["type"], welcome["user"]) == ("welcome", None)  # a claimed user is ignored
    refusals = [(e["id"], e["code"], e["message"]) for e in rest if e.get("type") == "error"]
    assert refusals == [
        (1, "forbidden", "/echo is an echo service"),
        (2, "forbidden", "/echo is an echo service"),
    ]
    assert {"type": "message", "data": "ping"} in rest
    assert rest[-1] == {"raw": "plain echo"}
    # alice's direct message reached her own session only, never the foreign page.
    assert (sent["user"], sent["nodes"], sent["sessions"]) == (USER, 1, 1)
    assert SECRET not in json.dumps(seen) and later == []
