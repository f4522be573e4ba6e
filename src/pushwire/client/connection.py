"""The connection loop: one link to a pushwire server that outlives its transports.

It connects over the first transport that works (from the last one that did), says `hello`
and waits for `welcome`, reads envelopes and hands them on, and after a drop comes back
with exponential backoff, resuming the session: `hello` carries the session id, its resume
secret (from the welcome: the id alone resumes nothing) and the last position of the
user's direct messages the client has (`inbox`). It knows nothing of
channels, requests or presence: the client is told when a connection is made (to subscribe
again), dropped (to fail what waited for an answer) and closed for good.

A server that says "back off" (HTTP 429, 503 with `Retry-After`, an `error` `limit` or
`rate_limited` at the hello, close 4029) is not asked again before the time it said (at
most `MAX_SERVER_BACKOFF`; a close 4029 that says none: `LIMITED_BACKOFF`), by any transport:
the bound is the client's address or session, not one transport's; the app is told
(`backoff`: a `Failure` `connect`).

An expired token (close 4005, or an `error` `token_expired`) is not retried as it is: with
`token_refresh` the loop asks the app for a new token and resumes the session with it;
without, the connection is closed for good with 4005.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

from .errors import ClientClosed, ConnectionLost, Failure, RequestFailed
from .retry import LIMITED_BACKOFF, MAX_SERVER_BACKOFF, parse_retry_after
from .transports import ClientTransport, Envelope, Item, make_transport

__all__ = ["DEFAULT_HTTP_TRANSPORTS", "Connection", "reconnectable"]

log = logging.getLogger("pushwire.client")

DEFAULT_HTTP_TRANSPORTS = ("websocket", "sse", "stream", "longpoll", "polling")


#: The close code of a connection whose token expired: come back with a new token.
TOKEN_EXPIRED = 4005
#: The close code of a client over a rate or a bound: come back after a backoff.
LIMITED = 4029
#: What an `error` envelope refusing the hello closes with (docs/security.md).
_REFUSED = {
    "forbidden": 4101,
    "unauthorized": 4102,
    "token_expired": TOKEN_EXPIRED,
    "limit": LIMITED,
    "rate_limited": LIMITED,
}


def reconnectable(code: int) -> bool:
    """docs/protocol.md: 4000-4099 (but 4004), 1001, 1006 and 1011 mean "come back"
    (4005, the token expired, with a new token)."""
    return code in (1001, 1006, 1011) or (4000 <= code < 4100 and code != 4004)


class Connection:
    """The connection loop; `Client` documents the arguments it passes on.

    Args:
        receive: awaited with each envelope (and its binary data) after `welcome`; the
            next one is read when it returns.
        connected: called once each connection has its `welcome`, the first one too.
        dropped: called with a reason when a connection drops and the loop comes back.
        closed: called once, when the connection is closed for good.
        token_refresh: gives a new token when the one in use expired (None: an expired
            token ends the connection with 4005).
        backoff: called with a `Failure` (`connect`) each time the server says to back off
            while the loop comes back; its `retry_after` is the least the loop waits.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None,
        token: str | None,
        transports: Sequence[str] | None,
        reconnect: bool,
        reconnect_delay: float,
        reconnect_delay_max: float,
        max_reconnect_attempts: int | None,
        connect_timeout: float,
        poll_interval: float,
        send_timeout: float,
        poll_margin: float,
        ssl_context: ssl.SSLContext | None,
        receive: Callable[[Envelope, bytes | None], Awaitable[None]],
        connected: Callable[[], None],
        dropped: Callable[[str], None],
        closed: Callable[[ClientClosed], None],
        token_refresh: Callable[[], Awaitable[str]] | None = None,
        backoff: Callable[[Failure], None] | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme
        self.url = url
        self.user = user
        #: The token sent in every hello: the latest one the app gave.
        self.token = token
        self.token_refresh = token_refresh
        #: When the session's token expires (seconds since the epoch, from the latest
        #: welcome or refresh; None: never, or unknown).
        self.expires: float | None = None
        # The token in use expired: get a new one before the next hello.
        self._stale_token = False
        default = ("tcp",) if scheme in ("tcp", "tcps") else DEFAULT_HTTP_TRANSPORTS
        self.transports = tuple(transports or default)
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.max_reconnect_attempts = max_reconnect_attempts
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        self.send_timeout = send_timeout
        self.poll_margin = poll_margin
        if ssl_context is None and scheme in ("wss", "https", "tcps"):
            # A secure URL is never spoken in plain text: the system's verified default,
            # made once for every (re)connection of this client.
            ssl_context = ssl.create_default_context()
        self.ssl_context = ssl_context
        #: Session ids the server said were gone when this client came back.
        self.expired: list[str] = []
        #: The latest welcome (its `inbox`: where the user's direct messages stand).
        self.welcome: Envelope = {}
        self.session: str | None = None
        # The session's resume secret (from the welcome): resuming needs it.
        self._secret: str | None = None
        #: Successful reconnections so far (the first connection is not one).
        self.reconnections = 0
        #: Why the connection ended for good, once it has.
        self.closed: ClientClosed | None = None
        self._receive, self._connected = receive, connected
        self._dropped, self._on_closed = dropped, closed
        self._backoff = backoff
        # The wait the last `error` said (`retry_after`), for the close 4029 that follows it.
        self._said_wait: float | None = None
        self._reconnected = asyncio.Condition()
        self._transport: ClientTransport | None = None
        self._preferred = 0
        #: What each hello names as `inbox`: the last direct message the client has.
        self.inbox: Callable[[], Envelope | None] = lambda: None
        self._ready = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def ready(self) -> bool:
        """Whether a connection is up (its welcome received, no drop seen since)."""
        return self._ready.is_set()

    @property
    def transport(self) -> str:
        """The name of the transport in use."""
        return self._transport.name if self._transport is not None else self.transports[0]

    async def open(self) -> None:
        """Connect and start reading. Raises `ClientClosed` when no transport works or the
        server refuses."""
        try:
            try:
                await self._connect()
            except ConnectionLost as lost:
                if lost.code != TOKEN_EXPIRED or self.token_refresh is None:
                    raise
                await self._renew_token()  # the first token expired already: once more
                await self._connect()
        except ConnectionLost as lost:
            raise ClientClosed(lost.code, lost.reason, lost.retry_after) from None
        self._reader = asyncio.ensure_future(self._read())

    async def close(self) -> None:
        """Say goodbye, stop reading and end for good (1000)."""
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport is not None:
            with contextlib.suppress(Exception):
                if transport.name != "websocket":
                    await asyncio.wait_for(transport.send([({"type": "close"}, None)]), 2)
                await asyncio.wait_for(transport.close(1000), 2)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._end(ClientClosed(1000, "closed by the client"))

    async def wait_ready(self, timeout: float) -> None:
        """Until a connection is up.

        Raises:
            ClientClosed: the connection is closed for good.
            RequestFailed: `disconnected`, when `timeout` passes first.
        """
        if self.closed is not None:
            raise self.closed
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise RequestFailed("disconnected", "not connected") from None

    async def send(self, items: list[Item]) -> None:
        """Send envelopes in order on the current connection. Raises `RequestFailed`
        (`disconnected`)."""
        transport = self._transport
        if transport is None:
            raise RequestFailed("disconnected", "not connected")
        async with self._send_lock:
            try:
                await transport.send(items)
            except ConnectionLost as lost:
                raise RequestFailed("disconnected", str(lost)) from None

    def send_soon(self, items: list[Item]) -> None:
        """Send envelopes from a task of their own; a failure is the reader's to see."""
        self._spawn(self._send_quietly(items))

    async def wait_reconnected(self, timeout: float | None = None) -> None:
        """Until the connection has come back after the next drop (or `timeout` passes)."""
        async with self._reconnected:
            target = self.reconnections + 1
            await asyncio.wait_for(
                self._reconnected.wait_for(lambda: self.reconnections >= target), timeout
            )

    # -- connecting --------------------------------------------------------------------------

    async def _connect(self) -> None:
        """One round over the transports, from the last one that worked."""
        order = self.transports[self._preferred :] + self.transports[: self._preferred]
        failures = []
        for name in order:
            try:
                await self._connect_with(name)
            except ConnectionLost as lost:
                failures.append(f"{name}: {lost}")
                if lost.retry_after is not None:
                    raise  # back off: every transport comes from the same client
                if lost.code == TOKEN_EXPIRED:
                    # Every transport would be refused too: the token must change first.
                    if self.token_refresh is None:
                        raise ClientClosed(lost.code, lost.reason) from None
                    raise
                if not reconnectable(lost.code) and lost.code != 1006:
                    raise ClientClosed(lost.code, lost.reason) from None
                continue
            self._preferred = self.transports.index(name)
            return
        raise ConnectionLost(1006, "no transport worked (" + "; ".join(failures) + ")")

    async def _connect_with(self, name: str) -> None:
        transport = make_transport(
            name,
            self.url,
            ssl_context=self.ssl_context,
            poll_interval=self.poll_interval,
            send_timeout=self.send_timeout,
            poll_margin=self.poll_margin,
        )
        hello: Envelope = {
            "type": "hello",
            "user": self.user,
            "token": self.token,
            "session": self.session,
            "resume": self._secret,
        }
        inbox = self.inbox()
        if inbox is not None:
            hello["inbox"] = inbox
        try:
            await transport.open(hello, self.connect_timeout)
            welcome = await asyncio.wait_for(self._welcome(transport), self.connect_timeout)
        except (TimeoutError, ConnectionLost) as exc:
            with contextlib.suppress(Exception):
                await transport.close()
            if isinstance(exc, ConnectionLost):
                raise
            # A lost connection like any other: the reconnect loop tries again (a bare
            # TimeoutError here ended the reading task, and the client sat silent for good).
            raise ConnectionLost(
                1006, f"{name}: no welcome within {self.connect_timeout:g} s"
            ) from exc
        if welcome.get("expired") is not None:
            self.expired.append(welcome["expired"])
        self.welcome = welcome
        self.session = welcome["session"]
        secret = welcome.get("resume")
        self._secret = secret if isinstance(secret, str) else None
        self.user = welcome.get("user", self.user)
        expires = welcome.get("expires")
        self.expires = float(expires) if isinstance(expires, int | float) else None
        self._transport = transport
        self._ready.set()
        self._connected()

    async def _welcome(self, transport: ClientTransport) -> Envelope:
        while True:
            envelope, _ = await transport.receive()
            kind = envelope["type"]
            if kind == "welcome":
                return envelope
            if kind == "error":
                error = str(envelope.get("code"))
                code = _REFUSED.get(error, 4100)
                message = str(envelope.get("message", ""))
                if code != LIMITED:
                    raise ConnectionLost(code, message)
                wait = parse_retry_after(envelope.get("retry_after"))
                raise ConnectionLost(
                    code, message, LIMITED_BACKOFF if wait is None else wait, error
                )
            if kind == "close":
                raise ConnectionLost(int(envelope.get("code", 1006)), str(envelope.get("reason")))

    async def _reconnect(self, lost: ConnectionLost) -> ClientClosed | None:
        """Come back after a drop, with backoff; a new token first when the one in use
        expired. Why the client must stop instead, if it must."""
        self._ready.clear()
        self._dropped(f"the connection dropped ({lost.code})")
        if self._transport is not None:
            with contextlib.suppress(Exception):
                await self._transport.close()
        attempt = 0
        floor = self._server_wait(lost, attempt)  # a close 4029: not before it says
        while not self._closing:
            attempt += 1
            if self.max_reconnect_attempts is not None and attempt > self.max_reconnect_attempts:
                return ClientClosed(lost.code, lost.reason)
            bound = min(self.reconnect_delay_max, self.reconnect_delay * 2 ** (attempt - 1))
            await asyncio.sleep(max(floor, random.uniform(0, bound)))  # full jitter
            floor = 0.0
            try:
                if self._stale_token:
                    await self._renew_token()
                await self._connect()
                async with self._reconnected:
                    self.reconnections += 1
                    self._reconnected.notify_all()
                return None
            except ConnectionLost as again:
                log.debug("reconnect attempt %d failed: %s", attempt, again)
                floor = self._server_wait(again, attempt)
                if again.code == TOKEN_EXPIRED:
                    self._stale_token = True  # the new token expired too: another one
            except ClientClosed as closed:
                return closed
        return ClientClosed(lost.code, lost.reason)

    def _server_wait(self, lost: ConnectionLost, attempts: int) -> float:
        """The least wait before the next attempt that the server asked for with `lost` (0:
        none), at most `MAX_SERVER_BACKOFF`; the app is told of one (`backoff`)."""
        wait = lost.retry_after
        if wait is None and lost.code == LIMITED:  # a close 4029: what its error said
            wait = self._said_wait if self._said_wait is not None else LIMITED_BACKOFF
            lost.retry_after, lost.error = wait, lost.error or "rate_limited"
        self._said_wait = None
        if wait is None:
            return 0.0
        wait = min(wait, MAX_SERVER_BACKOFF)
        log.info("the server asked to back off %g s: %s", wait, lost.reason)
        if self._backoff is not None:
            error = lost.error or "rate_limited"
            self._backoff(Failure("connect", error, lost.reason, None, max(1, attempts), wait))
        return wait

    async def _renew_token(self) -> None:
        """A new token from the app (`token_refresh`) for the next hello.

        Raises:
            ConnectionLost: 4005, when the app's callback failed or timed out (the loop
                tries again after its backoff).
        """
        fetch = self.token_refresh
        if fetch is None:
            raise ClientClosed(TOKEN_EXPIRED, "token expired")
        try:
            token = await asyncio.wait_for(fetch(), self.connect_timeout)
        except Exception as exc:  # the app's code: any failure means "no token yet"
            log.warning("token_refresh failed: %r", exc)
            raise ConnectionLost(TOKEN_EXPIRED, "no new token") from exc
        if not isinstance(token, str):
            raise ConnectionLost(TOKEN_EXPIRED, f"token_refresh gave {type(token).__name__}")
        self.token = token
        self._stale_token = False

    # -- reading -----------------------------------------------------------------------------

    def _stopping(self) -> bool:
        # A method, not the attribute: close() sets it while this task awaits.
        return self._closing

    async def _read(self) -> None:
        """Read until the end, reconnecting after drops; whatever else goes wrong ends the
        client visibly (1011: recv() raises, the app's callback hears it), never silently."""
        try:
            await self._read_loop()
        except Exception as exc:
            log.exception("the client's reading stopped")
            self._end(ClientClosed(1011, f"the client's reading failed: {exc!r}"))

    async def _read_loop(self) -> None:
        while not self._stopping():
            transport = self._transport
            assert transport is not None
            try:
                envelope, data = await transport.receive()
                kind = envelope["type"]
                if kind == "close":
                    raise ConnectionLost(
                        int(envelope.get("code", 1006)), str(envelope.get("reason"))
                    )
                # The server closes this connection next (4005); whatever ends it, the next
                # hello needs a new token. (With an id: a refresh refused, nothing more.)
                if kind == "error" and envelope.get("code") == "token_expired":
                    self._stale_token = self._stale_token or "id" not in envelope
                # A close 4029 may follow: it waits what the error said.
                if kind == "error" and envelope.get("code") in ("limit", "rate_limited"):
                    self._said_wait = parse_retry_after(envelope.get("retry_after"))
            except ConnectionLost as lost:
                if self._stopping():
                    return
                if lost.code == TOKEN_EXPIRED:
                    self._stale_token = True
                if self._stale_token and self.token_refresh is None:
                    self._end(ClientClosed(TOKEN_EXPIRED, lost.reason or "token expired"))
                    return
                if not (self.reconnect and reconnectable(lost.code)):
                    self._end(ClientClosed(lost.code, lost.reason))
                    return
                stopped = await self._reconnect(lost)
                if stopped is not None:
                    self._end(stopped)
                    return
                continue
            await self._receive(envelope, data)

    def _end(self, closed: ClientClosed) -> None:
        if self.closed is not None:
            return
        self.closed = closed
        self._ready.clear()
        self._on_closed(closed)

    # -- background sends ----------------------------------------------------------------------

    async def _send_quietly(self, items: list[Item]) -> None:
        with contextlib.suppress(RequestFailed):
            await self.send(items)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
