"""pushwire.js over each of its six transports in real Chromium: the same events, data and
channels whatever carries them, the fallback when WebSocket is refused, drops that lose and
repeat nothing (on the same transport, and switching transport), the iframe's recycling,
and pages on another origin (CORS)."""

from __future__ import annotations

import http.server
import json
import re
import socket
import struct
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager, suppress
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 15_000
TRANSPORTS = ["websocket", "sse", "stream", "iframe", "longpoll", "polling"]
HTTP_TRANSPORTS = TRANSPORTS[1:]
# Fast enough for tests: polling asks every 50 ms, reconnecting waits at most 200 ms.
FAST = {"pollInterval": 50, "reconnectDelay": 50, "reconnectDelayMax": 200}

HELPERS = r"""
window.describe = async function (data) {
  if (typeof data === 'string') return ['string', data];
  if (data instanceof ArrayBuffer) return ['ArrayBuffer', Array.from(new Uint8Array(data))];
  if (data instanceof Blob) return ['Blob', Array.from(new Uint8Array(await data.arrayBuffer()))];
  return [Object.prototype.toString.call(data), null];
};

window.opened = function (socket) {
  return new Promise((resolve, reject) => {
    socket.addEventListener('open', () => resolve(socket));
    socket.addEventListener('close', (e) => reject(new Error('closed ' + e.code)));
  });
};

// The trace of states and events of one echo exchange, as in test_browser_client.py.
window.lifecycle = function (url, options) {
  return new Promise((resolve) => {
    const log = [];
    const socket = new Pushwire(url, options);
    log.push(['constructed', socket.readyState, socket.protocol, socket.transport]);
    try { socket.send('too early'); log.push(['send while connecting', 'no error']); }
    catch (e) { log.push(['send while connecting', e.name, e instanceof DOMException]); }
    socket.addEventListener('transport', (e) => log.push(['transport', e.transport, e.previous]));
    socket.onopen = (e) => {
      log.push(['open', socket.readyState, e.constructor.name, socket.protocol, socket.transport]);
      socket.send('hello');
    };
    socket.onmessage = (e) => {
      log.push(['message', socket.readyState, e.constructor.name, e.data]);
      socket.close(1000, 'bye');
      log.push(['close() called', socket.readyState]);
    };
    socket.onerror = () => log.push(['error', socket.readyState]);
    socket.onclose = (e) => {
      log.push(['close', socket.readyState, e.constructor.name, e.code, e.reason, e.wasClean]);
      resolve(log);
    };
  });
};

// Echo every kind of data and describe what comes back, in order.
window.roundtrip = async function (url, options, binaryType) {
  const socket = new Pushwire(url, options);
  if (binaryType) socket.binaryType = binaryType;
  const received = [];
  const sent = [
    'text é 发送 \n newline',
    '',
    new Uint8Array([1, 2, 3]),
    new Uint8Array([0, 10, 255, 10]).buffer,
    new Uint8Array(new Uint8Array([1, 2, 3, 4, 5]).buffer, 2, 2),
    new DataView(new Uint8Array([9, 8, 7, 6, 5]).buffer, 1, 3),
    new Blob([new Uint8Array([4, 10, 4])]),
    'after the blob',
    new Uint8Array(0),
    new Uint8Array(70000).map((_, i) => i % 251),
  ];
  const done = new Promise((resolve) => {
    socket.onmessage = (e) => {
      received.push(describe(e.data));
      if (received.length === sent.length) resolve();
    };
  });
  await opened(socket);
  for (const data of sent) socket.send(data);
  await done;
  socket.close();
  const described = await Promise.all(received);
  // The large one is summed up: its length and whether every byte is right.
  const [kind, bytes] = described[described.length - 1];
  described[described.length - 1] = [kind, bytes.length, bytes.every((b, i) => b === i % 251)];
  return {received: described, transport: socket.transport};
};

// A Pushwire connection whose every event is recorded in window.events / window.messages.
window.connect = function (url, options) {
  const pw = new Pushwire(url, options);
  window.pw = pw;
  window.events = [];
  window.messages = [];
  const types = ['open', 'close', 'error', 'reconnecting', 'reconnected', 'expired', 'presence',
                 'join', 'leave', 'gap', 'servererror', 'transport'];
  const field = (e, name) => (e[name] === undefined ? null : e[name]);
  for (const type of types) {
    pw.addEventListener(type, (e) => window.events.push({
      type, readyState: pw.readyState, transport: pw.transport,
      code: field(e, 'code'), channel: field(e, 'channel'), count: field(e, 'count'),
      user: e.member ? e.member.user : null,
    }));
  }
  pw.addEventListener('message', (e) => {
    const data = typeof e.data === 'string' ? e.data
      : e.data instanceof ArrayBuffer ? Array.from(new Uint8Array(e.data)) : 'Blob:' + e.data.size;
    window.messages.push({data, channel: e.channel, offset: e.offset,
                          readyState: pw.readyState});
  });
  return opened(pw).then(() => ({
    session: pw.session, user: pw.user, protocol: pw.protocol, transport: pw.transport,
  }));
};
"""


class Requests:
    """The URLs a page requested (HTTP) and opened (WebSocket), as the browser saw them, and
    the HTTP requests themselves (method, URL, headers, body)."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.sent: list[tuple[str, str, dict[str, str], str | None]] = []
        page.on("request", self._request)
        page.on("websocket", lambda ws: self.urls.append(ws.url))

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)
        self.sent.append((request.method, request.url, request.headers, request.post_data))

    def matching(self, fragment: str) -> list[str]:
        return [url for url in self.urls if fragment in url]

    def assert_session_kept_out_of_urls(self, endpoint: str, transport: str) -> None:
        """`transport` opened at `endpoint` as the browser allows (a POST with the hello as
        its body where fetch can; `?hello=` for sse and iframe), and every later request
        named its session in the `Pushwire-Session` header (id and secret), never in a URL.
        """
        opening = f"{endpoint}/{transport}"
        if transport in ("sse", "iframe"):
            assert self.matching(f"{opening}?hello=")
        else:
            posts = [
                body for method, url, _, body in self.sent if (method, url) == ("POST", opening)
            ]
            assert posts and all(json.loads(body or "")["type"] == "hello" for body in posts)
            assert not self.matching("hello=")
        assert not self.matching("session=")
        named = [
            (method, url, headers.get("pushwire-session"))
            for method, url, headers, _ in self.sent
            if method != "OPTIONS"
            and (url.startswith(f"{endpoint}/send") or url.startswith(f"{opening}?cursor="))
        ]
        assert [method for method, _, _ in named].count("POST") >= 1, named  # sends
        if transport in ("longpoll", "polling"):
            assert [method for method, _, _ in named].count("GET") >= 1, named  # polls
        for _, _, header in named:
            assert header is not None and re.fullmatch(r"[\w.-]+ [\w-]{22}", header), named


@contextmanager
def open_page(browser: Browser, url: str, *, pushwire_js: str) -> Iterator[Page]:
    """A fresh page at `url`, with pushwire.js (from `pushwire_js`) and the helpers loaded."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.add_script_tag(url=pushwire_js)
        page.add_script_tag(content=HELPERS)
        yield page
    finally:
        context.close()


def server_page(browser: Browser, server: ServerProcess) -> AbstractContextManager[Page]:
    """A page on the server's own origin."""
    return open_page(browser, server.url("/healthz"), pushwire_js=server.url("/pushwire.js"))


def options(transport: str | None, **extra: Any) -> dict[str, Any]:
    chosen = {} if transport is None else {"transports": [transport]}
    return {**FAST, **chosen, **extra}


def post(server: ServerProcess, path: str, body: bytes, content_type: str = "text/plain") -> Any:
    request = urllib.request.Request(
        server.url(path), data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# -- the same behaviour on every transport -----------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_events_and_ready_state_are_those_of_websocket_on_every_transport(
    browser: Browser, server: ServerProcess, transport: str
) -> None:
    with server_page(browser, server) as page:
        requests = Requests(page)
        trace = page.evaluate(
            "([url, options]) => lifecycle(url, options)",
            [server.url("/echo"), options(transport)],
        )
    assert trace == [
        ["constructed", 0, "", None],
        ["send while connecting", "InvalidStateError", True],
        ["transport", transport, None],
        ["open", 1, "Event", "pushwire.v1", transport],
        ["message", 1, "MessageEvent", "hello"],
        ["close() called", 2],
        ["close", 3, "CloseEvent", 1000, "bye", True],
    ]
    # It really went over that transport, and over no other.
    port = server.port
    if transport == "websocket":
        assert requests.matching(f"ws://127.0.0.1:{port}/echo")
        assert not requests.matching("?hello=")
    else:
        requests.assert_session_kept_out_of_urls(f"http://127.0.0.1:{port}/echo", transport)
        assert not requests.matching("ws://")
        others = [name for name in HTTP_TRANSPORTS if name != transport]
        assert not [url for name in others for url in requests.matching(f"/echo/{name}")]


EXPECTED_ROUNDTRIP: list[list[Any]] = [
    ["string", "text é 发送 \n newline"],
    ["string", ""],
    ["KIND", [1, 2, 3]],
    ["KIND", [0, 10, 255, 10]],
    ["KIND", [3, 4]],
    ["KIND", [8, 7, 6]],
    ["KIND", [4, 10, 4]],
    ["string", "after the blob"],
    ["KIND", []],
    ["KIND", 70000, True],
]


@pytest.mark.parametrize("binary_type", ["blob", "arraybuffer"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_text_and_binary_round_trip_on_echo_over_every_transport(
    browser: Browser, server: ServerProcess, transport: str, binary_type: str
) -> None:
    with server_page(browser, server) as page:
        result = page.evaluate(
            "([url, options, type]) => roundtrip(url, options, type)",
            [server.url("/echo"), options(transport), binary_type],
        )
    kind = "ArrayBuffer" if binary_type == "arraybuffer" else "Blob"
    expected = [[kind if part == "KIND" else part for part in row] for row in EXPECTED_ROUNDTRIP]
    assert result == {"received": expected, "transport": transport}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_pages_subscribe_publish_and_see_presence_over_every_transport(
    browser: Browser, server: ServerProcess, transport: str
) -> None:
    with server_page(browser, server) as alice, server_page(browser, server) as bob:
        opened = alice.evaluate(
            "([options]) => connect('/pushwire', options)", [options(transport, user="alice")]
        )
        assert opened["user"] == "alice"
        assert opened["transport"] == transport
        bob.evaluate(
            "([options]) => connect('/pushwire', options)", [options(transport, user="bob")]
        )
        joined = alice.evaluate("() => pw.subscribe('room', {presence: true})")
        bob.evaluate("() => pw.subscribe('room')")
        alice.wait_for_function("() => events.some((e) => e.type === 'presence' && e.count === 2)")
        members = alice.evaluate(
            "() => pw.presence('room').members.map((m) => [m.user, m.info.via]).sort()"
        )
        assert members == [["alice", transport], ["bob", transport]]
        asked = bob.evaluate("() => pw.fetchPresence('room')")  # on demand, no presence events
        assert asked["count"] == 2 and asked["truncated"] is False
        assert sorted(m["user"] for m in asked["members"]) == ["alice", "bob"]
        published = bob.evaluate("() => pw.publish('room', 'hi from bob')")
        assert published["offset"] == joined["offset"] + 1
        bob.evaluate("() => { pw.binaryType = 'arraybuffer'; }")
        alice.evaluate("() => pw.publish('room', new Uint8Array([1, 10, 0, 255]))")
        bob.evaluate("() => pw.publish('room', new Blob(['é']))")
        alice.wait_for_function("() => messages.length === 3")
        bob.wait_for_function("() => messages.length === 3")
        at_alice = alice.evaluate("() => messages")
        at_bob = bob.evaluate("() => messages")
        bob.evaluate("() => pw.close()")
        bob.wait_for_function("() => pw.readyState === 3")
        alice.wait_for_function(
            "() => events.filter((e) => e.type === 'presence').slice(-1)[0].count === 1"
        )
        alice_events = alice.evaluate("() => events.map((e) => [e.type, e.count, e.user])")
        bob_events = bob.evaluate("() => events.map((e) => [e.type, e.code])")
    offset = joined["offset"]
    assert [(m["data"], m["offset"], m["readyState"]) for m in at_alice] == [
        ("hi from bob", offset + 1, 1),
        ("Blob:4", offset + 2, 1),
        ("Blob:2", offset + 3, 1),
    ]
    assert [m["data"] for m in at_bob] == ["hi from bob", [1, 10, 0, 255], [195, 169]]
    assert alice_events == [
        ["transport", None, None],
        ["open", None, None],
        ["presence", 1, None],  # the members: alice alone
        ["join", 2, "bob"],
        ["presence", 2, None],
        ["leave", 1, "bob"],
        ["presence", 1, None],
    ]
    assert bob_events == [["transport", None], ["open", None], ["close", 1000]]


# -- choosing the transport ----------------------------------------------------------------------


def test_the_default_client_falls_back_to_sse_when_websocket_is_refused(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--no-websocket")
    with server_page(browser, server) as alice, server_page(browser, server) as bob:
        refused = Requests(alice)
        opened = alice.evaluate("() => connect('/pushwire', {user: 'alice'})")
        bob.evaluate("() => connect('/pushwire', {user: 'bob'})")
        alice.evaluate("() => pw.subscribe('lobby')")
        bob.evaluate("() => pw.subscribe('lobby')")
        bob.evaluate("() => pw.publish('lobby', 'through the fallback')")
        alice.wait_for_function("() => messages.length === 1")
        received = alice.evaluate("() => messages.map((m) => m.data)")
        state = alice.evaluate("() => [pw.transport, pw.readyState, events.map((e) => e.type)]")
    assert opened["transport"] == "sse"
    assert state == ["sse", 1, ["transport", "open"]]
    assert received == ["through the fallback"]
    assert refused.matching(f"ws://127.0.0.1:{server.port}/pushwire")  # tried first


def test_a_transport_that_never_connects_passes_the_turn_after_connect_timeout(
    browser: Browser, server: ServerProcess
) -> None:
    with server_page(browser, server) as page:
        result = page.evaluate(
            """async ([url]) => {
                // The registry is open: a transport named 'silent' that never connects.
                class Silent {
                  constructor() { this.bufferedAmount = 0; }
                  open() {} send() {} close() {} abort() {}
                }
                Pushwire.transports.silent = Silent;
                const started = performance.now();
                const pw = new Pushwire(url, {transports: ['silent', 'longpoll'],
                                              connectTimeout: 300});
                await opened(pw);
                const elapsed = performance.now() - started;
                pw.close();
                return [pw.transport, elapsed >= 300];
            }""",
            [server.url("/echo")],
        )
    assert result == ["longpoll", True]


# -- loss: drops mid-stream ------------------------------------------------------------------------


class CutProxy:
    """A TCP proxy in front of the server that can cut every open connection at once (RST),
    refuse new ones for a while (an outage), and refuse WebSocket upgrades as a blocking
    proxy would.

    A cut alone may go unnoticed: Chromium sends a GET again by itself when the connection
    it was on is reset before any answer (a held long-poll), which the cursor makes safe.
    An outage makes that second try fail too, so that the client itself has to resume."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.block_websocket = False
        self.refusing = False
        # What each connection asked for first, refused or not: "websocket" for an upgrade,
        # else the request line.
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            client.settimeout(5)
            first = client.recv(65536)
            client.settimeout(None)
        except OSError:
            client.close()
            return
        websocket = b"upgrade: websocket" in first.lower()
        with self.lock:
            self.requests.append("websocket" if websocket else first.split(b"\r\n")[0].decode())
        if self.refusing or (websocket and self.block_websocket):
            self._kill(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self.lock:
            if self._refusing():  # the outage began while this one was being connected
                self._kill(client)
                self._kill(upstream)
                return
            self.sockets += [client, upstream]
        with suppress(OSError):
            upstream.sendall(first)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _refusing(self) -> bool:
        return self.refusing

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._kill(source)
            self._kill(target)

    @staticmethod
    def _kill(sock: socket.socket) -> None:
        """Close with RST. Closing alone would wait for the pump thread blocked in recv() on
        it (that call holds the socket); shutting down reading wakes that thread first."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Reset every open connection: neither side gets a close of any kind."""
        with self.lock:
            doomed, self.sockets = self.sockets, []
        for sock in doomed:
            self._kill(sock)

    def outage(self) -> None:
        """Cut every connection and refuse new ones until `restore()`."""
        with self.lock:
            self.refusing = True
        self.cut()

    def restore(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.listener.close()
        self.outage()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[CutProxy]:
    instance = CutProxy((server.host, server.port))
    yield instance
    instance.close()


class Publisher:
    """Publishes `feed` channel messages (and every 5th a direct message to `user`) from
    another thread, straight to the server, until stopped: traffic during a drop."""

    def __init__(self, server: ServerProcess, user: str, limit: int = 800) -> None:
        self.server, self.user, self.limit = server, user, limit
        self.channel: list[str] = []
        self.direct: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set() and len(self.channel) < self.limit:
            text = f"c{len(self.channel)}"
            post(self.server, "/api/publish/feed", text.encode())
            self.channel.append(text)
            if len(self.channel) % 5 == 0:
                text = f"d{len(self.direct)}"
                assert post(self.server, f"/api/send/{self.user}", text.encode())["sessions"] == 1
                self.direct.append(text)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def received_everything(page: Page, publisher: Publisher) -> None:
    page.wait_for_function(
        """([channel, direct]) =>
            messages.filter((m) => m.channel === 'feed').length >= channel &&
            messages.filter((m) => m.channel === null).length >= direct""",
        arg=[len(publisher.channel), len(publisher.direct)],
    )


def assert_exactly_once_in_order(page: Page, publisher: Publisher) -> None:
    messages = page.evaluate("() => messages")
    channel = [m for m in messages if m["channel"] == "feed"]
    direct = [m for m in messages if m["channel"] is None]
    assert [m["data"] for m in channel] == publisher.channel
    offsets = [m["offset"] for m in channel]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert [m["data"] for m in direct] == publisher.direct
    assert [m["offset"] for m in direct] == list(range(1, len(direct) + 1))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_drop_mid_stream_loses_and_repeats_nothing_on_the_same_transport(
    browser: Browser, server_factory: ServerFactory, transport: str
) -> None:
    # Chromium does not tell a page that its iframe's response was cut: no `load`, no
    # `error`; the client finds out with its pings, every `heartbeat` (ping_interval) of
    # silence. The other transports see the drop themselves: the default 20 s heartbeat
    # would not come within this test's waits.
    server = server_factory(*(["--set", "ping_interval=1"] if transport == "iframe" else []))
    proxy = CutProxy((server.host, server.port))
    user = f"loss-{transport}"
    with closing(proxy), server_page(browser, server) as page:
        first = page.evaluate(
            "([url, options]) => connect(url, options)",
            [proxy.url("/pushwire"), options(transport, user=user)],
        )
        page.evaluate("() => pw.subscribe('feed')")
        publisher = Publisher(server, user)
        try:
            page.wait_for_function("() => messages.length >= 30")
            proxy.outage()  # while the publisher goes on
            at_outage = len(publisher.channel)
            page.wait_for_function("() => events.some((e) => e.type === 'reconnecting')")
            proxy.restore()
            page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
            page.wait_for_function(
                "([n]) => messages.length >= n", arg=[len(publisher.channel) + 20]
            )
        finally:
            publisher.stop()
        received_everything(page, publisher)
        assert_exactly_once_in_order(page, publisher)
        state = page.evaluate("() => [pw.session, pw.transport, events.map((e) => e.type)]")
    # Published on through the outage and after (not a count: a quick reconnection, and
    # so a short test, published 49 in CI where this asked for more than 50).
    assert len(publisher.channel) > at_outage
    session, now, events = state
    assert session == first["session"]
    assert now == transport
    # Each cut connection is one drop; the app sees reconnecting/reconnected, nothing else.
    assert events[:2] == ["transport", "open"]
    assert set(events[2:]) == {"reconnecting", "reconnected"}


def test_a_dropped_event_stream_resumes_its_session_not_eventsource_reconnection(
    browser: Browser, server: ServerProcess, proxy: CutProxy
) -> None:
    """EventSource would reconnect by itself with its first URL, whose hello opens a new
    session; the client closes it on error and resumes the session itself."""
    with server_page(browser, server) as page:
        requests = Requests(page)
        first = page.evaluate(
            "([url, options]) => connect(url, options)",
            [proxy.url("/pushwire"), options("sse", user="sse-only")],
        )
        page.evaluate("() => pw.subscribe('feed')")
        post(server, "/api/publish/feed", b"before")
        page.wait_for_function("() => messages.length === 1")
        proxy.cut()  # the stream only; nothing is sent up meanwhile
        page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
        post(server, "/api/publish/feed", b"after")
        page.wait_for_function("() => messages.length === 2")
        state = page.evaluate("() => [pw.session, pw._resume, events.map((e) => e.type), messages]")
    session, secret, events, messages = state
    assert session == first["session"]
    assert events == ["transport", "open", "reconnecting", "reconnected"]
    assert [m["data"] for m in messages] == ["before", "after"]
    hellos = requests.matching("/pushwire/sse?hello=")
    assert len(hellos) == 2
    # EventSource takes nothing but a URL: the resuming hello, secret included, is in it.
    assert urllib.parse.quote(f'"session":"{session}","resume":"{secret}"') in hellos[1]


def test_a_drop_switches_from_websocket_to_longpoll_and_loses_nothing(
    browser: Browser, server: ServerProcess, proxy: CutProxy
) -> None:
    user = "switcher"
    chosen = options(None, user=user, transports=["websocket", "longpoll"])
    with server_page(browser, server) as page:
        first = page.evaluate(
            "([url, options]) => connect(url, options)", [proxy.url("/pushwire"), chosen]
        )
        assert first["transport"] == "websocket"
        page.evaluate("() => pw.subscribe('feed')")
        publisher = Publisher(server, user)
        try:
            page.wait_for_function("() => messages.length >= 30")
            proxy.block_websocket = True  # from now on, as behind a blocking proxy
            proxy.cut()
            page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
            page.wait_for_function(
                "([n]) => messages.length >= n", arg=[len(publisher.channel) + 20]
            )
        finally:
            publisher.stop()
        received_everything(page, publisher)
        assert_exactly_once_in_order(page, publisher)
        switched = page.evaluate("() => [pw.session, events.map((e) => [e.type, e.transport])]")

        # The next drop: the client starts again from longpoll, which worked last, not from
        # websocket (allowed again now).
        proxy.block_websocket = False
        before = len(proxy.requests)
        page.evaluate("() => { events.length = 0; }")
        proxy.outage()
        page.wait_for_function("() => events.some((e) => e.type === 'reconnecting')")
        proxy.restore()
        page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
        post(server, "/api/publish/feed", b"after the second drop")
        page.wait_for_function("() => messages.slice(-1)[0].data === 'after the second drop'")
        second = page.evaluate("() => events.map((e) => e.type)")
        attempts = [
            request
            for request in proxy.requests[before:]
            if request == "websocket" or request.startswith("POST /pushwire/longpoll ")
        ]
    session, events = switched
    assert session == first["session"]
    assert events == [
        ["transport", "websocket"],
        ["open", "websocket"],
        ["reconnecting", "websocket"],
        ["transport", "longpoll"],
        ["reconnected", "longpoll"],
    ]
    # If the outage outlasts a round of the list, websocket comes after longpoll.
    assert second[0] == "reconnecting"
    assert second[-1] == "reconnected"
    assert attempts[0] == "POST /pushwire/longpoll HTTP/1.1"


# -- the iframe's recycling ------------------------------------------------------------------------


def test_the_iframe_recycles_invisibly_losing_and_repeating_nothing(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--set", "iframe_max_bytes=4096")
    user = "framed"
    with server_page(browser, server) as page:
        requests = Requests(page)
        page.evaluate(
            "([options]) => connect('/pushwire', options)", [options("iframe", user=user)]
        )
        page.evaluate("() => Promise.all([pw.subscribe('feed'), pw.subscribe('echoes')])")
        # The page also sends while frames are being replaced: each channel message it gets
        # is published back to it on another channel.
        page.evaluate(
            "() => pw.addEventListener('message', (e) => {"
            " if (e.channel === 'feed') pw.publish('echoes', 'echo ' + e.data); })"
        )
        publisher = Publisher(server, user, limit=300)
        publisher.thread.join(60)
        publisher.stop()
        received_everything(page, publisher)
        page.wait_for_function(
            "([n]) => messages.filter((m) => m.channel === 'echoes').length >= n",
            arg=[len(publisher.channel)],
        )
        messages = page.evaluate("() => messages")
        state = page.evaluate(
            "() => [events.map((e) => e.type), document.querySelectorAll('iframe').length,"
            " pw.transport]"
        )
    channel = [m["data"] for m in messages if m["channel"] == "feed"]
    direct = [m["data"] for m in messages if m["channel"] is None]
    echoes = [m["data"] for m in messages if m["channel"] == "echoes"]
    assert channel == publisher.channel
    assert direct == publisher.direct
    assert echoes == [f"echo {c}" for c in channel]
    seqs = [m["offset"] for m in messages if m["channel"] is None]
    assert seqs == list(range(1, len(seqs) + 1))
    events, frames, transport = state
    assert events == ["transport", "open"]  # no reconnecting, no reconnected
    assert frames == 1  # each recycled frame was removed
    assert transport == "iframe"
    assert len(requests.matching("/pushwire/iframe?hello=")) >= 5  # recycled several times


# -- cross-origin pages ------------------------------------------------------------------------


@pytest.fixture
def other_origin() -> Iterator[str]:
    """A second loopback origin (another port) serving one blank page."""

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
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_a_page_on_another_origin_uses_the_http_transports_with_cors(
    browser: Browser, server: ServerProcess, other_origin: str, transport: str
) -> None:
    with (
        open_page(browser, other_origin + "/", pushwire_js=server.url("/pushwire.js")) as page,
        server_page(browser, server) as peer,
    ):
        requests = Requests(page)
        echoed = page.evaluate(
            "([url, options]) => roundtrip(url, options, 'arraybuffer')",
            [server.url("/echo"), options(transport)],
        )
        page.evaluate(
            "([url, options]) => connect(url, options)",
            [server.url("/pushwire"), options(transport, user="remote")],
        )
        page.evaluate("() => pw.subscribe('shared', {presence: true})")
        peer.evaluate("() => connect('/pushwire', {user: 'local'})")
        peer.evaluate("() => pw.subscribe('shared')")
        page.wait_for_function("() => events.some((e) => e.type === 'presence' && e.count === 2)")
        peer.evaluate("() => pw.publish('shared', 'to the other origin')")
        page.evaluate("() => pw.publish('shared', new Uint8Array([7, 10, 7]))")
        page.wait_for_function("() => messages.length === 2")
        peer.wait_for_function("() => messages.length === 2")
        at_page = page.evaluate("() => [location.origin, messages.map((m) => m.data)]")
        at_peer = peer.evaluate("() => messages.map((m) => m.data)")
    expected = [
        ["ArrayBuffer" if part == "KIND" else part for part in row] for row in EXPECTED_ROUNDTRIP
    ]
    assert echoed == {"received": expected, "transport": transport}
    assert at_page == [other_origin, ["to the other origin", "Blob:3"]]
    assert at_peer == ["to the other origin", "Blob:3"]
    requests.assert_session_kept_out_of_urls(f"http://127.0.0.1:{server.port}/pushwire", transport)
