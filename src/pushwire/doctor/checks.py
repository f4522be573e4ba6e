"""The checks of `pushwire doctor`, each a verdict with what to fix in the proxy in front."""

from __future__ import annotations

import asyncio
import enum
import secrets
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Final

import orjson
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.typing import Subprotocol

from . import wire
from .wire import Target

TLS_WARN_DAYS: Final = 14

_NGINX_UPGRADE = (
    "nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
    'proxy_set_header Connection "upgrade"; (docs/deployment.md)'
)
FIXES: Final[dict[str, tuple[str, ...]]] = {
    "http": (
        "check the URL, that pushwire runs (pushwire serve) and that the proxy routes "
        "/healthz to it; behind a proxy give pushwire --allow-host <public name> (else 421)",
    ),
    "keep-alive": (
        "nginx: keepalive_timeout 75s; (not 0) and no 'Connection: close' added",
        "HAProxy: option http-keep-alive (the default); remove option httpclose",
    ),
    "tls": (
        "renew the certificate before it expires (e.g. certbot renew) and reload the proxy",
        "serve the full chain (nginx ssl_certificate fullchain.pem; HAProxy crt with the "
        "chain) for the URL's host name",
    ),
    "websocket": (
        _NGINX_UPGRADE,
        "HAProxy: mode http passes the upgrade; add timeout tunnel 1h",
        "Caddy: reverse_proxy passes WebSocket as is; check a CDN or load balancer in front "
        "allows WebSocket",
    ),
    "buffering": (
        "nginx: proxy_buffering off; proxy_cache off; gzip off for these paths (pushwire "
        "sends X-Accel-Buffering: no: do not proxy_ignore_headers it)",
        "HAProxy: no compression of text/event-stream or application/x-ndjson",
        "Caddy: reverse_proxy { flush_interval -1 }",
    ),
    "hello": (
        "give --token with a valid connection token for this endpoint, or check /echo "
        "(the default endpoint: no token needed)",
    ),
    "idle": (
        "nginx: proxy_read_timeout 3600s; proxy_send_timeout 3600s; (default 60s)",
        "HAProxy: timeout tunnel 1h; timeout client 1h; timeout server 1h",
        "or keep pushwire's heartbeat under the path's idle timeout: "
        "pushwire serve --set heartbeat_interval=N --set ping_interval=N",
    ),
}


class Status(enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict of one check: `detail` says what was seen, `fixes` what to change."""

    name: str
    status: Status
    detail: str
    fixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Options:
    endpoint: str = "/echo"
    timeout: float = 5.0
    slow: float = 1.0
    idle_check: float = 5.0
    cafile: str | None = None
    #: The connection token of the hello, for an endpoint that needs one.
    token: str | None = None


#: Streams are asked for as browsers ask: a proxy that compresses them must flush each event.
GZIP: Final = "Accept-Encoding: gzip"


def fail(name: str, detail: str, fixes: str | None = None) -> Check:
    return Check(name, Status.FAIL, detail, FIXES[fixes or name])


async def check_http(target: Target, options: Options) -> tuple[Check, Check]:
    """`GET /healthz` twice on one connection: the `http` and `keep-alive` verdicts."""
    request = wire.request(target, "GET", "/healthz")
    try:
        reader, writer = await asyncio.wait_for(wire.open_connection(target), options.timeout)
    except (OSError, TimeoutError) as exc:
        problem = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        return fail("http", f"cannot connect: {problem}"), skipped("keep-alive", "http")
    try:
        start = time.monotonic()
        writer.write(request)
        first = await asyncio.wait_for(wire.read_head(reader), options.timeout)
        await asyncio.wait_for(wire.body_bytes(reader, first), options.timeout)
        took = time.monotonic() - start
        if first.status != 200:
            detail = f"GET {target.base}/healthz answered {first.status}"
            return fail("http", detail), skipped("keep-alive", "http")
        http = Check("http", Status.PASS, f"GET /healthz: 200 in {_ms(took)} ({first.version})")
        if not first.keeps_alive:
            why = f"{first.version}, Connection: {first.headers.get('connection', '-')}"
            return http, fail("keep-alive", f"the connection closes after one request ({why})")
        writer.write(request)
        try:
            second = await asyncio.wait_for(wire.read_head(reader), options.timeout)
        except (asyncio.IncompleteReadError, OSError, TimeoutError):
            return http, fail("keep-alive", "no answer to a second request on the connection")
        if second.status != 200:
            return http, fail("keep-alive", f"a second request answered {second.status}")
        return http, Check("keep-alive", Status.PASS, "2 requests on one HTTP/1.1 connection")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError) as exc:
        return fail("http", f"no valid answer to GET /healthz: {exc!r}"), skipped(
            "keep-alive", "http"
        )
    except TimeoutError:
        detail = f"no answer to GET /healthz within {options.timeout:g} s"
        return fail("http", detail), skipped("keep-alive", "http")
    finally:
        await wire.close(writer)


async def check_tls(target: Target, options: Options) -> Check:
    """The certificate verifies (chain and host name) and expires later than TLS_WARN_DAYS."""
    if not target.secure:
        return Check("tls", Status.SKIP, "http:// URL: no TLS (serve https:// in production)")
    try:
        _, writer = await asyncio.wait_for(wire.open_connection(target), options.timeout)
    except ssl.SSLCertVerificationError as exc:
        return fail("tls", f"certificate not valid for {target.host}: {exc.verify_message}")
    except (OSError, TimeoutError) as exc:
        return fail("tls", f"no TLS handshake: {exc!r}")
    try:
        certificate = writer.get_extra_info("peercert") or {}
        version = writer.get_extra_info("ssl_object").version()
    finally:
        await wire.close(writer)
    not_after = str(certificate.get("notAfter", ""))
    if not not_after:
        return fail("tls", "the server sent no certificate")
    days = (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400
    detail = (
        f"{version}, certificate valid for {target.host}, expires {not_after} ({days:.0f} days)"
    )
    if days < TLS_WARN_DAYS:
        return Check("tls", Status.WARN, detail, FIXES["tls"])
    return Check("tls", Status.PASS, detail)


def _hello(options: Options) -> str:
    hello = (
        {"type": "hello"} if options.token is None else {"type": "hello", "token": options.token}
    )
    return orjson.dumps(hello).decode()


def _websocket(target: Target, options: Options) -> websocket_connect:
    """A pushwire.v1 WebSocket to the endpoint; the client sends no pings of its own (the
    server's are answered), so an idle connection stays idle."""
    return websocket_connect(
        target.ws_url(options.endpoint),
        ssl=target.context,
        subprotocols=[Subprotocol("pushwire.v1")],
        ping_interval=None,
    )


async def check_websocket(target: Target, options: Options) -> Check:
    """The upgrade passes; on /echo a message sent comes back."""
    try:
        async with asyncio.timeout(options.timeout):
            async with _websocket(target, options) as ws:
                start = time.monotonic()
                await ws.send(_hello(options))
                welcome = orjson.loads(await ws.recv())
                if welcome.get("type") != "welcome":
                    return _refused("websocket", options, welcome)
                took = _ms(time.monotonic() - start)
                detail = f"upgrade to {options.endpoint} passed, welcome in {took}"
                if options.endpoint.rstrip("/").endswith("/echo"):
                    nonce = secrets.token_hex(8)
                    start = time.monotonic()
                    await ws.send(orjson.dumps({"type": "send", "data": nonce}).decode())
                    while orjson.loads(await ws.recv()).get("data") != nonce:
                        pass
                    detail += f", echo in {_ms(time.monotonic() - start)}"
                return Check("websocket", Status.PASS, detail)
    except InvalidStatus as exc:
        status = exc.response.status_code
        return fail("websocket", f"upgrade to {options.endpoint} refused: HTTP {status}")
    except TimeoutError:
        return fail("websocket", f"no WebSocket answer within {options.timeout:g} s")
    except (OSError, WebSocketException, ValueError) as exc:
        return fail("websocket", f"WebSocket to {options.endpoint} failed: {exc!r}")


async def check_stream(target: Target, options: Options, kind: str) -> Check:
    """A `kind` ("sse" or "stream") stream on the endpoint: the time to its first event, and on
    /echo the time from sending a message to its echo arriving on the open stream."""
    endpoint = options.endpoint.rstrip("/")
    if kind == "sse":
        query = urllib.parse.quote(_hello(options))
        request = wire.request(
            target, "GET", f"{endpoint}/sse?hello={query}", b"", "Accept: text/event-stream", GZIP
        )
    else:
        hello = _hello(options).encode()
        request = wire.request(target, "POST", f"{endpoint}/stream", hello, GZIP)
    try:
        reader, writer = await asyncio.wait_for(wire.open_connection(target), options.timeout)
    except (OSError, TimeoutError) as exc:
        return fail(kind, f"cannot connect: {exc!r}", "http")
    try:
        start = time.monotonic()
        writer.write(request)
        async with asyncio.timeout(options.timeout):
            response = await wire.read_head(reader)
        if response.status != 200:
            return fail(kind, f"{endpoint}/{kind} answered {response.status}", "http")
        events = wire.Events(kind, wire.decoded(response, wire.body(reader, response)))
        try:
            async with asyncio.timeout(options.timeout):
                welcome = await events.next()
        except TimeoutError:
            got = f"only {events.received} bytes" if events.received else "no byte of the body"
            detail = (
                f"{got} within {options.timeout:g} s after the response head: the events are "
                "held back (buffered) between client and server"
            )
            return fail(kind, detail, "buffering")
        first = time.monotonic() - start
        if welcome.get("type") != "welcome":
            return _refused(kind, options, welcome)
        detail = f"first event after {_ms(first)}"
        worst = first
        if endpoint.endswith("/echo") and isinstance(welcome.get("session"), str):
            session = f"Pushwire-Session: {welcome['session']} {welcome.get('resume', '')}"
            nonce = secrets.token_hex(8)
            sent = time.monotonic()
            try:
                await _send(target, options, endpoint, session, nonce)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                detail += f", but sending the echo failed: {exc!r}"
                return fail(kind, detail, "http")
            try:
                async with asyncio.timeout(options.timeout):
                    while (await events.next()).get("data") != nonce:
                        pass
            except TimeoutError:
                detail += f", but an echo sent after it did not arrive within {options.timeout:g} s"
                return fail(kind, detail + ": the stream is buffered", "buffering")
            echo = time.monotonic() - sent
            worst = max(worst, echo)
            detail += f", echo {_ms(echo)} after it was sent"
        if worst > options.slow:
            detail += f": over {options.slow:g} s, something may buffer"
            return Check(kind, Status.WARN, detail, FIXES["buffering"])
        return Check(kind, Status.PASS, detail + " (not buffered)")
    except TimeoutError:
        detail = (
            f"no response head from {endpoint}/{kind} within {options.timeout:g} s though "
            "/healthz answers: the stream is held back (buffered)"
        )
        return fail(kind, detail, "buffering")
    except StopAsyncIteration:
        return fail(kind, "the stream ended before its events", "buffering")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError) as exc:
        return fail(kind, f"the stream broke: {exc!r}", "buffering")
    finally:
        await wire.close(writer)


async def _send(target: Target, options: Options, endpoint: str, session: str, data: str) -> None:
    body = orjson.dumps({"type": "send", "data": data})
    reader, writer = await asyncio.wait_for(wire.open_connection(target), options.timeout)
    try:
        writer.write(
            wire.request(target, "POST", f"{endpoint}/send", body, session, "Connection: close")
        )
        async with asyncio.timeout(options.timeout):
            response = await wire.read_head(reader)
        if response.status >= 300:
            raise ValueError(f"{endpoint}/send answered {response.status}")
    finally:
        await wire.close(writer)


async def check_idle(target: Target, options: Options, websocket: bool) -> Check:
    """A connection left idle `options.idle_check` seconds is still open and answers (a
    WebSocket when the upgrade passes, else a stream). pushwire's own heartbeats flow."""
    seconds = options.idle_check
    if seconds <= 0:
        return Check("idle", Status.SKIP, "--idle-check 0")
    start = time.monotonic()
    if websocket:
        try:
            async with asyncio.timeout(options.timeout + seconds):
                async with _websocket(target, options) as ws:
                    await ws.send(_hello(options))
                    welcome = orjson.loads(await ws.recv())
                    start = time.monotonic()
                    try:
                        async with asyncio.timeout(seconds):
                            while True:
                                await ws.recv()  # nothing is expected: only a close ends this
                    except TimeoutError:
                        pass
                    await ws.send(orjson.dumps({"type": "ping"}).decode())
                    while orjson.loads(await ws.recv()).get("type") != "pong":
                        pass
        except ConnectionClosed as exc:
            lived = time.monotonic() - start
            how = f"close {exc.rcvd.code}" if exc.rcvd else "cut without a close frame"
            return fail("idle", f"an idle WebSocket was closed after {lived:.1f} s ({how})")
        except (OSError, WebSocketException) as exc:
            return fail("idle", f"an idle WebSocket failed: {exc!r}")
        except TimeoutError:
            return fail("idle", f"an idle WebSocket stopped answering after {seconds:g} s")
        what = f"an idle WebSocket lived {seconds:g} s and still answers"
        heartbeat = welcome.get("heartbeat")
    else:
        try:
            reader, writer = await asyncio.wait_for(wire.open_connection(target), options.timeout)
        except (OSError, TimeoutError) as exc:
            return fail("idle", f"cannot connect: {exc!r}", "http")
        try:
            writer.write(
                wire.request(target, "POST", f"{options.endpoint}/stream", _hello(options).encode())
            )
            try:
                async with asyncio.timeout(seconds):
                    while await reader.read(65536):
                        pass
                lived = time.monotonic() - start
                return fail("idle", f"an idle stream was closed after {lived:.1f} s")
            except TimeoutError:
                pass
        finally:
            await wire.close(writer)
        what = f"an idle stream (WebSocket failed) lived {seconds:g} s"
        heartbeat = None
    if isinstance(heartbeat, int | float) and seconds <= heartbeat:
        what += (
            f"; pushwire's heartbeat is every {heartbeat:g} s: --idle-check {heartbeat + 10:g} "
            "proves the path lets a connection wait for it"
        )
    return Check("idle", Status.PASS, what)


def _refused(name: str, options: Options, answer: dict[str, object]) -> Check:
    """The endpoint answered the hello with something other than a welcome."""
    what = f"{answer.get('code')}: {answer.get('message')}" if "code" in answer else answer
    return fail(name, f"{options.endpoint} did not welcome the hello ({what})", "hello")


def skipped(name: str, because: str) -> Check:
    return Check(name, Status.SKIP, f"not checked: {because} failed")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
