"""What the HTTP transports share: a minimal HTTP/1.1 client connection over asyncio streams
(keep-alive requests, streamed chunked bodies; through the HTTP proxy the environment names,
in a `CONNECT` tunnel), cheaper per request than httpx (docs/benchmarks.md, "The Python
client's HTTP layer"); and `HttpTransport`, whose downstream opens with `POST E/<name>`
(the hello as its body), whose upstream is `POST E/send`, and whose requests name the session
in the `Pushwire-Session` header (id and resume secret: never in a URL)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.request
from collections import deque
from urllib.parse import SplitResult, unquote, urlsplit

from ..errors import ConnectionLost
from ..retry import LIMITED_BACKOFF, parse_retry_after
from .base import (
    MAX_FRAME,
    MAX_HEAD,
    ClientTransport,
    Item,
    decode_text,
    encode_text,
)

__all__ = ["HttpConnection", "HttpTransport", "proxy_for", "read_chunk", "refusal"]

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpConnection:
    """A minimal HTTP/1.1 client connection: keep-alive requests and streamed chunked bodies."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> Streams:
        if self.reader is not None and self.reader.at_eof():
            self.close()  # the server closed it while idle: a fresh one, before writing
        if self.reader is None or self.writer is None or self.writer.is_closing():
            proxy = proxy_for(self.host, self.port, self.ssl_context is not None)
            if proxy is None:
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl_context, limit=MAX_FRAME
                )
            else:
                self.reader, self.writer = await self._tunnel(proxy)
        return self.reader, self.writer

    async def _tunnel(
        self, proxy: SplitResult
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection through an HTTP proxy's `CONNECT` tunnel (TLS inside it for https)."""
        reader, writer = await asyncio.open_connection(
            proxy.hostname, proxy.port or 80, limit=MAX_FRAME
        )
        target = f"{self.host}:{self.port}"
        auth = ""
        if proxy.username is not None:
            secret = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
            auth = f"Proxy-Authorization: Basic {base64.b64encode(secret).decode()}\r\n"
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.") else b"?"
        if status != b"200":
            writer.close()
            raise ConnectionLost(
                1006, f"proxy {proxy.hostname}:{proxy.port}: CONNECT {target} answered {status!r}"
            )
        if self.ssl_context is not None:
            await writer.start_tls(self.ssl_context, server_hostname=self.host)
        return reader, writer

    async def begin(
        self, method: str, target: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, dict[str, str], asyncio.StreamReader]:
        """Send a request (`headers`: more header lines, each ending in CRLF); return the
        status, headers and the reader at the body."""
        reader, writer = await self._connect()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
        if len(raw) > MAX_HEAD:
            raise ConnectionLost(1009, f"http: response head over {MAX_HEAD} bytes")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip()
        return status, fields, reader

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: str = "",
        *,
        timeout: float | None = None,
        repeatable: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """A whole request and response (Content-Length bodies), on a kept-alive connection.

        `timeout`: the deadline of the whole exchange, connecting included (None: none).
        Past it the request is abandoned and its connection closed (a late answer must
        never be read as the next request's): `ConnectionLost` (1006), not tried again.
        `repeatable`: a connection that fails under the request is tried once more on a
        fresh one. Only for requests that may be carried out twice: a cut may come after
        the server did it (a send is not repeatable; a poll, whose cursor says what the
        client has, is). A connection the server closed while idle is replaced before the
        request is written, repeatable or not.
        """
        for attempt in (0, 1):
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    status, fields, reader = await self.begin(method, target, body, headers)
                    content = await reader.readexactly(int(fields.get("content-length", "0")))
            except (OSError, asyncio.IncompleteReadError) as exc:  # TimeoutError is an OSError
                self.close()
                if deadline.expired():
                    path = target.partition("?")[0]
                    raise ConnectionLost(
                        1006, f"http: {method} {path}: no answer within {timeout:g} s"
                    ) from exc
                if attempt or not repeatable:
                    raise ConnectionLost(1006, f"http: {exc}") from exc
                continue  # the kept-alive connection was closed under us: once more, fresh
            if fields.get("connection", "").lower() == "close":
                self.close()
            return status, fields, content
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def proxy_for(host: str, port: int, secure: bool) -> SplitResult | None:
    """The HTTP proxy the environment names for `host` (`HTTPS_PROXY` for https, else
    `HTTP_PROXY`, then `ALL_PROXY`; upper or lower case), unless `NO_PROXY` exempts it."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get("https" if secure else "http") or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(f"{host}:{port}"):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectionLost(1006, f"proxy {proxy!r}: only http:// proxies are supported")
    return parts


def refusal(
    what: str, status: int, retry_after: str | None, content: bytes = b""
) -> ConnectionLost:
    """What an HTTP answer other than the one hoped for means for the connection: 429, and
    503 with a `Retry-After`, say "back off" (4029 with its wait: `rate_limited`, `limit`);
    anything else is a lost connection (1006)."""
    said = f"{what}: HTTP {status}" + (f" {content[:120]!r}" if content else "")
    wait = parse_retry_after(retry_after)
    if status == 429:
        return ConnectionLost(4029, said, LIMITED_BACKOFF if wait is None else wait, "rate_limited")
    if status == 503 and wait is not None:
        return ConnectionLost(4029, said, wait, "limit")
    return ConnectionLost(1006, said)


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """The next chunk of a chunked body (b"" at its end)."""
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.split(b";")[0], 16)
    if size > MAX_FRAME:
        raise ConnectionLost(1009, f"chunk over {MAX_FRAME} bytes")
    data = await reader.readexactly(size + 2)
    return data[:-2]


#: Bytes a second an upload is allowed beside `send_timeout`: the server's default
#: `min_receive_rate`, the slowest upload it still takes (a large message on a slow uplink
#: is not abandoned while the server would accept it).
UPLOAD_RATE_FLOOR = 16 * 1024


class HttpTransport(ClientTransport):
    """Shared by the HTTP transports: envelopes go up in `POST E/send` on one connection and
    come down on another, as lines queued in `pending`. An upload not answered within
    `send_timeout` seconds, plus the time its body takes at `UPLOAD_RATE_FLOOR`, is
    abandoned, its connection closed: it fails as a cut one does (`ConnectionLost`), and is
    not sent again here (it may have been carried out)."""

    def __init__(
        self,
        base: str,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        send_timeout: float,
    ):
        super().__init__()
        self.base = base  # the endpoint path, e.g. /pushwire
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.send_timeout = send_timeout
        self.upstream = HttpConnection(host, port, ssl_context)
        self.downstream = HttpConnection(host, port, ssl_context)
        self.pending: deque[bytes] = deque()

    def _session_header(self) -> str:
        """The header line naming this session and proving it ours (polls and sends)."""
        if self.session is None or self.secret is None:
            raise ConnectionLost(1006, "no session yet")
        return f"Pushwire-Session: {self.session} {self.secret}\r\n"

    def _next_pending(self) -> Item:
        item = decode_text(self.pending.popleft())
        self._learn(item[0])
        return item

    async def send(self, items: list[Item]) -> None:
        header = self._session_header()
        body = b"\n".join(encode_text(envelope, data) for envelope, data in items)
        status, _, content = await self.upstream.request(
            "POST",
            f"{self.base}/send",
            body,
            header,
            timeout=self.send_timeout + len(body) / UPLOAD_RATE_FLOOR,
            repeatable=False,  # a cut after the server took it: sent twice (issue 14)
        )
        if status != 204:
            raise ConnectionLost(1006, f"send refused: HTTP {status} {content[:120]!r}")

    async def close(self, code: int = 1000) -> None:
        self.downstream.close()
        self.upstream.close()
