"""The browser side in real Chromium: the seed article's WebSocket examples, and pushwire.js
checked against the native WebSocket, channels, presence, and reconnection over a real drop."""

# The seed article's code is quoted verbatim, with its full-width Chinese punctuation.
# ruff: noqa: RUF001

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WAIT_MS = 10_000


@contextmanager
def open_page(browser: Browser, server: ServerProcess, *, client: bool = True) -> Iterator[Page]:
    """A fresh page on the server's origin, with pushwire.js and the test helpers loaded."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url("/healthz"))
        if client:
            page.add_script_tag(url=server.url("/pushwire.js"))
            page.add_script_tag(content=HELPERS)
        yield page
    finally:
        context.close()


def post(server: ServerProcess, path: str, body: bytes, content_type: str = "text/plain") -> Any:
    request = urllib.request.Request(
        server.url(path), data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# -- the seed article's examples, unmodified but for host and port ---------------------------

# Records what every native WebSocket of the page does; the example code itself is untouched.
INSTRUMENT = """
window.__sockets = []; window.__events = []; window.__alerts = [];
const NativeWebSocket = window.WebSocket;
function __describe(data) {
  if (typeof data === 'string') return ['string', data];
  if (data instanceof ArrayBuffer) return ['ArrayBuffer', Array.from(new Uint8Array(data))];
  if (data instanceof Blob) return ['Blob', data.size];
  return [String(data), null];
}
window.WebSocket = class WebSocket extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    const index = __sockets.push(this) - 1;
    for (const type of ['open', 'message', 'error', 'close']) {
      this.addEventListener(type, (event) => __events.push({
        index, type, readyState: this.readyState,
        data: type === 'message' ? __describe(event.data) : null,
        code: type === 'close' ? event.code : null,
      }));
    }
  }
};
"""

SEED_ECHO_PAGE = """<!DOCTYPE HTML>
<html>
  <head>
    <meta charset="utf-8">
    <title>菜鸟教程(runoob.com)</title>
    <script>INSTRUMENT</script>
    <script type="text/javascript">
        function WebSocketTest()
        {
            if ("WebSocket" in window)
            {
                alert("您的浏览器支持 WebSocket!");

               // 打开一个 web socket
                var ws = new WebSocket("ws://localhost:PORT/echo");

                ws.onopen = function()
                {
                    // Web Socket 已连接上，使用 send() 方法发送数据
                    ws.send("发送数据");
                    alert("数据发送中...");
                };

                ws.onmessage = function (evt)
                {
                    var received_msg = evt.data;
                    alert("数据已接收...");
                };

                ws.onclose = function()
                {
                    // 关闭 websocket
                    alert("连接已关闭...");
                };
            }

            else
            {
                // 浏览器不支持 WebSocket
                alert("您的浏览器不支持 WebSocket!");
            }
        }
    </script>

  </head>
  <body>

      <div id="sse">
         <a href="javascript:WebSocketTest()">运行 WebSocket</a>
      </div>

  </body>
</html>
"""

SEED_BINARY_SCRIPT = """
var socket = new WebSocket('ws://127.0.0.1:PORT/echo');
socket.binaryType = 'arraybuffer';

// Wait until socket is open
socket.addEventListener('open', function (event) {
    // Send binary data
    var typedArray = new Uint8Array(4);
    socket.send(typedArray.buffer);
});

// Receive binary data
socket.addEventListener('message', function (event) {
    var arrayBuffer = event.data;
    // ...
});
"""

# What the article's page around this snippet provides: url, consumerId, sendMsg, weui.
SEED_STATE_CONTEXT = """
var url = 'ws://127.0.0.1:PORT/echo';
var consumerId = 'consumer-42';
function sendMsg() {}
window.weui = { alert: function (text) { __alerts.push(text); } };
"""

SEED_STATE_SCRIPT = """
var websocket = new WebSocket(url);
if(websocket.readyState == websocket.CONNECTING){
    console.log('连接正在打开');
}

websocket.onopen = function () {
    websocket.send(consumerId);
    //可以看到 "连接正在打开"并没有被打印，说明open对应的就是OPEN状态；
    if(websocket.readyState == websocket.CONNECTING){
        console.log('连接正在打开1');
    }
    if(websocket.readyState == websocket.OPEN){
        console.log('连接已打开');
    }
    sendMsg();
    window.weui.alert('已经建立连接');
};


//连接关闭时触发
websocket.onclose = function () {
    if(websocket.readyState == websocket.CLOSED){
        console.log('连接已关闭')
    }
    window.weui.alert('连接已断开');
};

//连接
websocket.onerror = function () {
    window.weui.alert('连接错误，请稍后再试');
};
"""


def _seed_page(body_scripts: list[str]) -> str:
    scripts = "".join(f"<script>{script}</script>\n" for script in body_scripts)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{scripts}</body></html>"


def test_seed_echo_example_sends_receives_and_closes(
    browser: Browser, server: ServerProcess
) -> None:
    alerts: list[str] = []
    with open_page(browser, server, client=False) as page:

        def answer(dialog: Dialog) -> None:
            alerts.append(dialog.message)
            dialog.accept()

        page.on("dialog", answer)
        html = SEED_ECHO_PAGE.replace("INSTRUMENT", INSTRUMENT).replace("PORT", str(server.port))
        page.set_content(html)
        page.click("text=运行 WebSocket")
        page.wait_for_function("() => __events.some((e) => e.type === 'message')")
        page.evaluate("() => __sockets[0].close()")
        page.wait_for_function("() => __events.some((e) => e.type === 'close')")
        events = page.evaluate("() => __events")
    assert alerts == [
        "您的浏览器支持 WebSocket!",
        "数据发送中...",
        "数据已接收...",
        "连接已关闭...",
    ]
    assert [(e["type"], e["readyState"]) for e in events] == [
        ("open", 1),
        ("message", 1),
        ("close", 3),
    ]
    assert events[1]["data"] == ["string", "发送数据"]
    assert events[2]["code"] == 1005  # close() without a code: the peer echoes an empty Close


def test_seed_binary_example_receives_an_arraybuffer(
    browser: Browser, server: ServerProcess
) -> None:
    with open_page(browser, server, client=False) as page:
        script = SEED_BINARY_SCRIPT.replace("PORT", str(server.port))
        page.set_content(_seed_page([INSTRUMENT, script]))
        page.wait_for_function("() => __events.some((e) => e.type === 'message')")
        events = page.evaluate("() => __events")
        received = page.evaluate("() => socket.binaryType")
    assert received == "arraybuffer"
    assert [e["type"] for e in events] == ["open", "message"]
    assert events[1]["data"] == ["ArrayBuffer", [0, 0, 0, 0]]


def test_seed_readystate_example_logs_connecting_open_closed(
    browser: Browser, server: ServerProcess
) -> None:
    console: list[str] = []
    with open_page(browser, server, client=False) as page:
        page.on(
            "console",
            lambda message: console.append(message.text) if message.type == "log" else None,
        )
        context = SEED_STATE_CONTEXT.replace("PORT", str(server.port))
        page.set_content(_seed_page([INSTRUMENT, context, SEED_STATE_SCRIPT]))
        page.wait_for_function("() => __events.some((e) => e.type === 'message')")
        page.evaluate("() => websocket.close()")
        page.wait_for_function("() => __alerts.includes('连接已断开')")
        events = page.evaluate("() => __events")
        alerts = page.evaluate("() => __alerts")
    assert console == ["连接正在打开", "连接已打开", "连接已关闭"]
    assert alerts == ["已经建立连接", "连接已断开"]
    assert [(e["type"], e["readyState"]) for e in events] == [
        ("open", 1),
        ("message", 1),
        ("close", 3),
    ]
    assert events[1]["data"] == ["string", "consumer-42"]


# -- pushwire.js side by side with the native WebSocket ---------------------------------------

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

// The same script for either constructor: the trace of states and events.
window.lifecycle = function (name, url) {
  const C = window[name];
  return new Promise((resolve) => {
    const log = [];
    const socket = new C(url);
    log.push(['constructed', socket.readyState, socket.protocol, socket.extensions]);
    try { socket.send('too early'); log.push(['send while connecting', 'no error']); }
    catch (e) { log.push(['send while connecting', e.name, e instanceof DOMException]); }
    socket.onopen = (e) => {
      const protocol = socket.protocol === '' ? '' : 'set';
      log.push(['open', socket.readyState, e.constructor.name, protocol]);
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

// A connection that never opens, or is closed before it opens.
window.failure = function (name, url, closeAtOnce) {
  const C = window[name];
  return new Promise((resolve) => {
    const log = [];
    const socket = new C(url);
    if (closeAtOnce) { socket.close(); log.push(['close() called', socket.readyState]); }
    socket.onopen = () => log.push(['open', socket.readyState]);
    socket.onerror = (e) => log.push(['error', socket.readyState, e.constructor.name]);
    socket.onclose = (e) => {
      log.push(['close', socket.readyState, e.code, e.reason, e.wasClean]);
      resolve(log);
    };
  });
};

window.constants = function (name, url) {
  const C = window[name];
  const socket = new C(url);
  const result = {
    static: [C.CONNECTING, C.OPEN, C.CLOSING, C.CLOSED],
    instance: [socket.CONNECTING, socket.OPEN, socket.CLOSING, socket.CLOSED],
    url: socket.url,
    binaryType: socket.binaryType,
    bufferedAmount: socket.bufferedAmount,
  };
  socket.binaryType = 'bogus';
  result.afterBogus = socket.binaryType;
  socket.binaryType = 'arraybuffer';
  result.afterArraybuffer = socket.binaryType;
  try { new C('ftp://example.com/'); result.badScheme = 'no error'; }
  catch (e) { result.badScheme = e.name; }
  socket.close();
  return result;
};

window.closeErrors = async function (name, url) {
  const socket = await opened(new window[name](url));
  const cases = [
    [999], [1001], [2999], [5000], [0], [1001, 'x'.repeat(200)],
    [1000, 'x'.repeat(124)], [1000, 'é'.repeat(62)], [3000, 'x'.repeat(124)],
    [4999, 'é'.repeat(61)],
  ];
  const results = [];
  for (const args of cases) {
    try { socket.close(...args); results.push('ok'); }
    catch (e) { results.push(e.name + (e instanceof DOMException ? '' : ' (not a DOMException)')); }
  }
  const code = await new Promise((resolve) => {
    socket.onclose = (e) => resolve([e.code, e.reason]);
  });
  return {results, closed: code};
};

// Echo every kind of data and describe what comes back, in order.
window.roundtrip = async function (name, url, binaryType) {
  const socket = new window[name](url);
  if (binaryType) socket.binaryType = binaryType;
  const received = [];
  const sent = [
    'text é 发送 \n newline',
    '',
    new Uint8Array([1, 2, 3]),
    new Uint8Array([0, 10, 255, 10]).buffer,
    new Uint8Array(new Uint8Array([1, 2, 3, 4, 5]).buffer, 2, 2),
    new Uint16Array([258]),
    new DataView(new Uint8Array([9, 8, 7, 6, 5]).buffer, 1, 3),
    new Blob([new Uint8Array([4, 10, 4])]),
    'after the blob',
    new Uint8Array(0),
  ];
  const done = new Promise((resolve) => {
    socket.onmessage = (e) => {
      received.push(describe(e.data));
      if (received.length === sent.length + 1) resolve();
    };
  });
  await opened(socket);
  for (const data of sent) socket.send(data);
  const mutated = new Uint8Array([7, 7]);
  socket.send(mutated);
  mutated[0] = 99;  // send() copied the bytes already
  await done;
  socket.close();
  return Promise.all(received);
};

window.buffering = async function (name, url) {
  const socket = await opened(new window[name](url));
  window.buffered = socket;
  const idle = socket.bufferedAmount;
  const echoed = new Promise((resolve) => { socket.onmessage = (e) => resolve(e.data.length); });
  socket.send('x'.repeat(512 * 1024));
  const busy = socket.bufferedAmount;
  return {idle, busy, echoed: await echoed};
};

// A Pushwire connection whose every event is recorded in window.events / window.messages.
window.connect = function (url, options) {
  const pw = new Pushwire(url, options);
  window.pw = pw;
  window.events = [];
  window.messages = [];
  const types = ['open', 'close', 'error', 'reconnecting', 'reconnected', 'expired', 'presence',
                 'gap', 'servererror'];
  const field = (e, name) => (e[name] === undefined ? null : e[name]);
  for (const type of types) {
    pw.addEventListener(type, (e) => window.events.push({
      type, readyState: pw.readyState,
      code: field(e, 'code'), channel: field(e, 'channel'), count: field(e, 'count'),
    }));
  }
  pw.addEventListener('message', (e) => {
    const data = typeof e.data === 'string' ? e.data
      : e.data instanceof ArrayBuffer ? Array.from(new Uint8Array(e.data)) : 'Blob:' + e.data.size;
    window.messages.push({
      data, channel: e.channel, epoch: e.epoch, offset: e.offset,
      lastEventId: e.lastEventId, isMessageEvent: e instanceof MessageEvent,
      readyState: pw.readyState,
    });
  });
  return opened(pw).then(() => ({
    session: pw.session, user: pw.user, protocol: pw.protocol, transport: pw.transport,
  }));
};
"""


def test_pushwire_lifecycle_matches_native_websocket(
    browser: Browser, server: ServerProcess
) -> None:
    url = server.ws_url("/echo")
    with open_page(browser, server) as page:
        native = page.evaluate("([url]) => lifecycle('WebSocket', url)", [url])
        pushwire = page.evaluate("([url]) => lifecycle('Pushwire', url)", [url])
    assert native == [
        ["constructed", 0, "", ""],
        ["send while connecting", "InvalidStateError", True],
        ["open", 1, "Event", ""],
        ["message", 1, "MessageEvent", "hello"],
        ["close() called", 2],
        ["close", 3, "CloseEvent", 1000, "bye", True],
    ]
    # The same trace, except that Pushwire negotiated its subprotocol.
    native[2][3] = "set"
    assert pushwire == native


def test_pushwire_fails_like_websocket_when_it_never_opens(
    browser: Browser, server: ServerProcess
) -> None:
    missing = server.ws_url("/no-such-endpoint")
    with open_page(browser, server) as page:
        native = page.evaluate("([url]) => failure('WebSocket', url, false)", [missing])
        pushwire = page.evaluate("([url]) => failure('Pushwire', url, false)", [missing])
        native_abort = page.evaluate(
            "([url]) => failure('WebSocket', url, true)", [server.ws_url("/echo")]
        )
        pushwire_abort = page.evaluate(
            "([url]) => failure('Pushwire', url, true)", [server.ws_url("/echo")]
        )
    assert native == [["error", 3, "Event"], ["close", 3, 1006, "", False]]
    assert pushwire == native
    assert native_abort == [
        ["close() called", 2],
        ["error", 3, "Event"],
        ["close", 3, 1006, "", False],
    ]
    assert pushwire_abort == native_abort


def test_pushwire_constants_url_and_binary_type_match_websocket(
    browser: Browser, server: ServerProcess
) -> None:
    with open_page(browser, server) as page:
        native = page.evaluate("([url]) => constants('WebSocket', url)", [server.ws_url("/echo")])
        pushwire = page.evaluate("([url]) => constants('Pushwire', url)", [server.ws_url("/echo")])
        from_http = page.evaluate("([url]) => new Pushwire(url).url", [server.url("/echo")])
        relative = page.evaluate("() => new Pushwire('/pushwire').url")
    assert native["static"] == native["instance"] == [0, 1, 2, 3]
    assert native["binaryType"] == "blob"
    assert native["afterBogus"] == "blob"
    assert native["afterArraybuffer"] == "arraybuffer"
    assert native["badScheme"] == "SyntaxError"
    assert native["bufferedAmount"] == 0
    assert pushwire == native
    assert from_http == server.ws_url("/echo")
    assert relative == server.ws_url("/pushwire")


def test_pushwire_close_validates_arguments_like_websocket(
    browser: Browser, server: ServerProcess
) -> None:
    with open_page(browser, server) as page:
        native = page.evaluate("([url]) => closeErrors('WebSocket', url)", [server.ws_url("/echo")])
        pushwire = page.evaluate(
            "([url]) => closeErrors('Pushwire', url)", [server.ws_url("/echo")]
        )
    assert native["results"] == [
        *["InvalidAccessError"] * 6,
        *["SyntaxError"] * 3,
        "ok",
    ]
    assert native["closed"] == [4999, "é" * 61]
    assert pushwire == native


@pytest.mark.parametrize("binary_type", [None, "blob", "arraybuffer"])
def test_pushwire_keeps_text_text_and_binary_binary_like_websocket(
    browser: Browser, server: ServerProcess, binary_type: str | None
) -> None:
    with open_page(browser, server) as page:
        args = [server.ws_url("/echo"), binary_type]
        native = page.evaluate("([url, type]) => roundtrip('WebSocket', url, type)", args)
        pushwire = page.evaluate("([url, type]) => roundtrip('Pushwire', url, type)", args)
    kind = "ArrayBuffer" if binary_type == "arraybuffer" else "Blob"
    assert native == [
        ["string", "text é 发送 \n newline"],
        ["string", ""],
        [kind, [1, 2, 3]],
        [kind, [0, 10, 255, 10]],
        [kind, [3, 4]],
        [kind, [2, 1]],
        [kind, [8, 7, 6]],
        [kind, [4, 10, 4]],
        ["string", "after the blob"],
        [kind, []],
        [kind, [7, 7]],
    ]
    assert pushwire == native


def test_pushwire_buffered_amount_counts_sends_and_drains_to_zero(
    browser: Browser, server: ServerProcess
) -> None:
    with open_page(browser, server) as page:
        for name in ("WebSocket", "Pushwire"):
            result = page.evaluate(
                "([name, url]) => buffering(name, url)", [name, server.ws_url("/echo")]
            )
            assert result["idle"] == 0, name
            assert result["busy"] >= 512 * 1024, name
            assert result["echoed"] == 512 * 1024, name
            page.wait_for_function("() => buffered.bufferedAmount === 0")
            page.evaluate("() => buffered.close()")


def test_pushwire_stops_on_a_close_code_that_does_not_mean_reconnect(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--set", "max_message=1000")
    with open_page(browser, server) as page:
        page.evaluate("([url]) => connect(url)", [server.ws_url("/echo")])
        page.evaluate("() => pw.send('x'.repeat(2000))")
        page.wait_for_function("() => events.some((e) => e.type === 'close')")
        events = page.evaluate("() => events")
        state = page.evaluate("() => [pw.readyState, pw.bufferedAmount]")
    # The server fails the connection with a Close frame and a half-close (it reads on until
    # the browser's Close arrives), so the close is clean: no `error`, and never a reconnect.
    assert [(e["type"], e["code"]) for e in events] == [("open", None), ("close", 1009)]
    assert state == [3, 0]


# -- channels, presence, direct messages ---------------------------------------------------------


def test_subscribe_and_publish_between_two_pages(browser: Browser, server: ServerProcess) -> None:
    with open_page(browser, server) as alice, open_page(browser, server) as bob:
        opened = alice.evaluate("() => connect('/pushwire', {user: 'alice'})")
        assert opened["user"] == "alice"
        assert opened["protocol"] == "pushwire.v1"
        assert opened["transport"] == "websocket"
        assert isinstance(opened["session"], str) and len(opened["session"]) >= 22
        bob.evaluate("() => connect('/pushwire', {user: 'bob'})")
        joined = alice.evaluate("() => pw.subscribe('room', {presence: true})")
        assert joined["channel"] == "room"
        bob.evaluate("() => pw.subscribe('room')")
        alice.wait_for_function("() => events.some((e) => e.type === 'presence' && e.count === 2)")
        published = bob.evaluate("() => pw.publish('room', 'hi from bob')")
        assert published["epoch"] == joined["epoch"]
        assert published["offset"] == joined["offset"] + 1
        bob.evaluate("() => { pw.binaryType = 'arraybuffer'; }")
        alice.evaluate("() => pw.publish('room', new Uint8Array([1, 10, 2]))")
        bob.wait_for_function("() => messages.length === 2")
        alice.wait_for_function("() => messages.length === 2")
        at_alice = alice.evaluate("() => messages")
        at_bob = bob.evaluate("() => messages")
        bob.evaluate("() => pw.close()")
        alice.wait_for_function(
            "() => events.filter((e) => e.type === 'presence').slice(-1)[0].count === 1"
        )
        alice_events = alice.evaluate("() => events.map((e) => e.type)")

        # After unsubscribe, nothing more of the channel arrives; 'other' tells when the
        # message published to 'room' before it would have arrived.
        alice.evaluate("() => pw.subscribe('other')")
        left = alice.evaluate("() => pw.unsubscribe('room')")
        post(server, "/api/publish/room", b"after leaving")
        post(server, "/api/publish/other", b"marker")
        alice.wait_for_function("() => messages.some((m) => m.data === 'marker')")
        after_leaving = alice.evaluate("() => messages.slice(2).map((m) => m.data)")
    assert left == {"channel": "room"}
    assert after_leaving == ["marker"]
    epoch, offset = joined["epoch"], joined["offset"]
    assert at_alice[0] == {
        "data": "hi from bob",
        "channel": "room",
        "epoch": epoch,
        "offset": offset + 1,
        "lastEventId": f"{epoch}:{offset + 1}",
        "isMessageEvent": True,
        "readyState": 1,
    }
    assert at_alice[1]["data"] == "Blob:3"
    assert [m["data"] for m in at_bob] == ["hi from bob", [1, 10, 2]]
    assert [m["offset"] for m in at_bob] == [offset + 1, offset + 2]
    assert "close" not in alice_events and "error" not in alice_events


def test_direct_messages_and_request_errors(browser: Browser, server: ServerProcess) -> None:
    with open_page(browser, server) as page:
        page.evaluate("() => connect('/pushwire', {user: 'erin'})")
        sent = post(server, "/api/send/erin", "für erin".encode())
        epoch = sent.pop("epoch")
        assert sent == {"user": "erin", "offset": 1, "nodes": 1, "sessions": 1}
        post(server, "/api/send/erin", b"\x00\x01", "application/octet-stream")
        page.wait_for_function("() => messages.length === 2")
        received = page.evaluate("() => messages")
        subscribe_error = page.evaluate(
            "() => pw.subscribe('no spaces allowed')"
            ".then(() => 'resolved', (e) => [e.code, e.message])"
        )
        publish_error = page.evaluate(
            "() => pw.publish('', 'x').then(() => 'resolved', (e) => [e.code, e.message])"
        )
        still_open = page.evaluate("() => pw.readyState")
    assert [(m["data"], m["channel"], m["offset"], m["lastEventId"]) for m in received] == [
        ("für erin", None, 1, f"{epoch}:1"),
        ("Blob:2", None, 2, f"{epoch}:2"),
    ]
    assert subscribe_error[0] == "bad_request"
    assert publish_error[0] == "bad_request"
    assert still_open == 1


# -- reconnection ----------------------------------------------------------------------------------


class DropProxy:
    """A TCP proxy in front of the server that can cut every connection at once (the browser
    sees 1006, the server a dropped connection) and refuse new ones: a network outage."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.refusing = False
        self.resetting = False
        self.refused = 0
        self.changed = threading.Condition()
        self.sockets: list[socket.socket] = []
        self.frozen: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.changed:
                if self.refusing:
                    self.refused += 1
                    self.changed.notify_all()
                    client.close()
                    continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.changed:
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self.frozen:
                    target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                self._kill(sock, self.resetting)

    @staticmethod
    def _kill(sock: socket.socket, reset: bool = False) -> None:
        try:
            if reset:
                # Close with RST rather than FIN. A socket another thread is blocked reading
                # is not released by close() until that read returns (and only then is the RST
                # sent): shutting down its reading side wakes the read and sends nothing.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def outage(self, reset: bool = True) -> None:
        """Cut every open connection (with RST, or FIN when not `reset`) and refuse new ones
        until `restore()`. Either way no Close frame is sent: the browser sees 1006."""
        with self.changed:
            self.refusing = True
            self.resetting = reset
            doomed, self.sockets = self.sockets, []
        for sock in doomed:
            self._kill(sock, reset)

    def freeze(self) -> None:
        """Stop forwarding on every open connection, and keep it open: a connection that died
        silently (no FIN, no RST). New connections work."""
        with self.changed:
            self.frozen.update(self.sockets)

    def wait_refused(self, count: int, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.refused >= count, timeout), self.refused

    def restore(self) -> None:
        with self.changed:
            self.refusing = False
            self.resetting = False

    def close(self) -> None:
        self.listener.close()
        self.outage()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[DropProxy]:
    instance = DropProxy((server.host, server.port))
    yield instance
    instance.close()


@pytest.mark.parametrize("cut", ["rst", "fin"])
def test_reconnect_after_a_drop_is_invisible_and_loses_or_repeats_nothing(
    browser: Browser, server: ServerProcess, proxy: DropProxy, cut: str
) -> None:
    url = f"ws://127.0.0.1:{proxy.port}/pushwire"
    options = {"user": "carol", "reconnectDelay": 50, "reconnectDelayMax": 200}
    with open_page(browser, server) as page:
        session = page.evaluate("([url, options]) => connect(url, options)", [url, options])[
            "session"
        ]
        page.evaluate("() => pw.subscribe('news')")
        post(server, "/api/publish/news", b"m1")
        post(server, "/api/publish/news", b"m2")
        post(server, "/api/send/carol", b"d1")
        page.wait_for_function("() => messages.length === 3")

        proxy.outage(reset=cut == "rst")
        page.wait_for_function("() => events.some((e) => e.type === 'reconnecting')")
        proxy.wait_refused(2)  # the client keeps trying, with backoff
        post(server, "/api/publish/news", b"m3")
        post(server, "/api/publish/news", b"m4")
        assert post(server, "/api/send/carol", b"d2")["sessions"] == 1  # the session waits
        during = page.evaluate(
            "() => { window.queued = pw.publish('news', 'm5');"
            " return [pw.readyState, pw.bufferedAmount]; }"
        )
        assert during[0] == 1
        assert during[1] >= len('{"type":"publish","id":0,"channel":"news","data":"m5"}')
        proxy.restore()

        page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
        published = page.evaluate("() => queued")
        page.wait_for_function("() => messages.length === 7")
        page.wait_for_function("() => pw.bufferedAmount === 0")
        after = page.evaluate("() => [pw.session, pw.readyState, events, messages]")

        # The server replays the whole history of the channel: nothing reaches the app twice.
        replayed = page.evaluate(
            """async () => {
                const raw = [];
                const receive = pw._receive.bind(pw);
                pw._receive = (envelope, bytes) => {
                    raw.push(envelope);
                    receive(envelope, bytes);
                };
                const epoch = messages[0].epoch;
                pw._transport.send({type: 'subscribe', id: 1e6, channel: 'news',
                                    since: {epoch, offset: 0}}, null);
                await pw.publish('news', 'm6');
                while (!messages.some((m) => m.data === 'm6')) {
                    await new Promise((resolve) => {
                        pw.addEventListener('message', resolve, {once: true});
                    });
                }
                return raw.filter((e) => e.type === 'message').map((e) => e.data);
            }"""
        )
        final = page.evaluate("() => messages.filter((m) => m.channel).map((m) => m.data)")

    current, ready_state, events, messages = after
    assert current == session
    assert ready_state == 1
    assert [(e["type"], e["readyState"]) for e in events] == [
        ("open", 1),
        ("reconnecting", 1),
        ("reconnected", 1),
    ]
    channel = [m for m in messages if m["channel"] == "news"]
    direct = [m for m in messages if m["channel"] is None]
    assert [m["data"] for m in channel] == ["m1", "m2", "m3", "m4", "m5"]
    offsets = [m["offset"] for m in channel]
    assert offsets == list(range(offsets[0], offsets[0] + 5))
    assert published["offset"] == offsets[4]
    assert [(m["data"], m["offset"]) for m in direct] == [("d1", 1), ("d2", 2)]
    assert replayed == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert final == ["m1", "m2", "m3", "m4", "m5", "m6"]


def test_reconnect_on_close_code_4000_tells_the_app_its_session_expired(
    browser: Browser, server: ServerProcess
) -> None:
    options = {"user": "dave", "reconnectDelay": 50}
    with open_page(browser, server) as page:
        first = page.evaluate("([options]) => connect('/pushwire', options)", [options])
        page.evaluate("() => pw.subscribe('alerts')")
        post(server, "/api/publish/alerts", b"a1")
        post(server, "/api/send/dave", b"d1")
        page.wait_for_function("() => messages.length === 2")
        # Closing from this side ends the session on the server (docs/protocol.md):
        # the echoed 4000 makes the client come back, as a new session.
        page.evaluate("() => pw._debugDropConnection(4000)")
        page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
        # The client subscribes again as it reconnects: wait for the answer, or a2 would be
        # published before the subscription and come from history, after d2.
        page.wait_for_function(
            "() => ![...pw._requests.values()].some((request) => request.kind === 'subscribe')"
        )
        post(server, "/api/publish/alerts", b"a2")
        post(server, "/api/send/dave", b"d2")
        page.wait_for_function("() => messages.length === 4")
        session, events, messages = page.evaluate("() => [pw.session, events, messages]")
    assert session != first["session"]
    assert [e["type"] for e in events] == ["open", "reconnecting", "expired", "reconnected"]
    assert [(m["data"], m["channel"] is None and m["offset"]) for m in messages] == [
        ("a1", False),
        ("d1", 1),
        ("a2", False),
        ("d2", 2),  # the user's inbox carries on across sessions
    ]


def stats_sessions(server: ServerProcess) -> int:
    with urllib.request.urlopen(server.url("/api/stats"), timeout=10) as response:
        count = json.loads(response.read())["sessions"]
    assert isinstance(count, int)
    return count


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
def test_direct_messages_sent_while_away_past_the_grace_arrive_after_the_reconnect(
    browser: Browser, server_factory: ServerFactory, transport: str
) -> None:
    """Offline longer than `session_grace`: the session is gone, the user's inbox is not.
    The page comes back as a new session (`expired`) and gets what was sent meanwhile."""
    server = server_factory(
        "--set", "session_grace=0.2", "--set", "poll_grace=0.3", "--set", "longpoll_timeout=0.3"
    )
    user = f"away-{transport}"
    proxy = DropProxy((server.host, server.port))
    try:
        url = f"http://127.0.0.1:{proxy.port}/pushwire"
        options = {"user": user, "transports": [transport], "reconnectDelay": 50}
        with open_page(browser, server) as page:
            page.evaluate("([url, options]) => connect(url, options)", [url, options])
            post(server, f"/api/send/{user}", b"before")
            page.wait_for_function("() => messages.length === 1")
            proxy.outage()
            page.wait_for_function("() => events.some((e) => e.type === 'reconnecting')")
            deadline = time.monotonic() + 10
            while stats_sessions(server) != 0:  # the server forgot the session
                assert time.monotonic() < deadline
                time.sleep(0.05)
            sent = post(server, f"/api/send/{user}", b"while away")
            assert (sent["nodes"], sent["sessions"]) == (0, 0)
            proxy.restore()
            page.wait_for_function("() => messages.length === 2")
            events, messages = page.evaluate("() => [events.map((e) => e.type), messages]")
            position = page.evaluate("() => pw.inboxPosition")
    finally:
        proxy.close()
    assert "expired" in events and "gap" not in events
    assert [(m["data"], m["channel"], m["offset"]) for m in messages] == [
        ("before", None, 1),
        ("while away", None, 2),
    ]
    assert position == {"epoch": sent["epoch"], "offset": 2}


def test_a_stop_close_code_from_the_server_ends_without_reconnecting(
    browser: Browser, server: ServerProcess
) -> None:
    with open_page(browser, server) as page:
        page.evaluate("() => connect('/pushwire', {reconnectDelay: 10})")
        page.evaluate("() => pw._debugDropConnection(4100)")
        page.wait_for_function("() => events.some((e) => e.type === 'close')")
        events = page.evaluate("() => events")
        sent = page.evaluate("() => { pw.send('after'); return pw.readyState; }")
    assert [(e["type"], e["code"]) for e in events] == [("open", None), ("close", 4100)]
    assert sent == 3


def test_a_connection_that_went_silent_is_detected_and_replaced(
    browser: Browser, server_factory: ServerFactory
) -> None:
    # The server's heartbeat (welcome "heartbeat") is 0.5 s; it would wait 60 s for a pong.
    server = server_factory("--set", "ping_interval=0.5", "--set", "ping_timeout=60")
    proxy = DropProxy((server.host, server.port))
    try:
        url = f"ws://127.0.0.1:{proxy.port}/pushwire"
        with open_page(browser, server) as page:
            first = page.evaluate(
                "([url]) => connect(url, {user: 'frank', reconnectDelay: 50})", [url]
            )
            page.evaluate("() => pw.subscribe('beat')")
            proxy.freeze()
            page.wait_for_function("() => events.some((e) => e.type === 'reconnected')")
            post(server, "/api/publish/beat", b"b1")
            page.wait_for_function("() => messages.length === 1")
            session, events, messages = page.evaluate("() => [pw.session, events, messages]")
    finally:
        proxy.close()
    assert [(e["type"], e["readyState"]) for e in events] == [
        ("open", 1),
        ("reconnecting", 1),
        ("reconnected", 1),
    ]
    assert session == first["session"]  # the new connection took the session over
    assert [m["data"] for m in messages] == ["b1"]
