"""The asyncio client: one `Client` per connection to a pushwire server, over any transport;
`connect()` makes one. It puts together the parts beside it: the connection loop
(connection.py), requests (requests.py), subscriptions and their positions
(subscriptions.py), direct messages (directs.py), presence (presence.py), the inbox (inbox.py).

Guarantees: channel and direct messages arrive in offset order, each at most once, across
reconnections, transport changes and expired sessions (hellos name the last direct message,
channels are re-subscribed from their last position); what cannot be recovered is a `Gap`
with its exact range (channel None: direct messages). Cancelling `recv()` loses no message.

Errors reach the app: a re-subscription, publish or send that fails for a reason that passes
(`unavailable`, no answer, no connection) is retried with backoff (`retry`); given up, or
refused, the awaited call raises `RequestFailed`, `on_error` gets a `Failure`, and what no
call raises (a re-subscription after a reconnection, a refused `send`) is a `Failure` in the
message stream too. A publish keeps one idempotency key over its attempts: published once.

Presence: a channel subscribed with `presence=True` has its members in `client.presence`,
kept up to date by the server's `join` and `leave`; `presence_events()` yields those as
`Join` / `Leave`. After a reconnection the server sends the members again; the client
compares, and what changed while it was away is yielded as joins and leaves too.

Tokens: with `token_refresh`, a token that the server says expires (the welcome's `expires`)
is refreshed before it does, without reconnecting (refresh.py); a connection closed because
the token expired (4005) comes back with a new one, resuming its session. Without it, an
expired token closes the client for good: `ClientClosed(4005)`.

Backpressure: messages wait in an inbox of `max_queue` entries until `recv()` takes them. When
it is full the client stops reading from the connection (nothing is dropped): the socket's
buffers fill and the server sees a slow consumer, whose own bounds then apply (close 4001,
after which the client reconnects and recovers from history). Answers to requests come on the
same connection behind those messages, so a request made while the inbox is full waits until
the application reads (or fails with `timeout`): read from a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType

from .connecting import connecting
from .connection import Connection
from .directs import DirectPosition, message_data
from .errors import ClientClosed, Failure, Gap, Message, Presence, RequestFailed, Subscription
from .inbox import Inbox
from .presence import PresenceEvents, Roster, parse_presence
from .refresh import TokenRefresh
from .requests import Requests, with_data
from .retry import RetryPolicy, retrying
from .subscriptions import Subscriptions
from .transports.base import Envelope

__all__ = ["Client", "connect"]

log = logging.getLogger("pushwire.client")


class Client:
    """A connection to a pushwire server. `connect()` takes the same arguments.

    Args:
        url: `ws://host:port/pushwire`, `http://…` (the same endpoint; any pushwire.v1
            endpoint, e.g. `/echo` or `/ws/<channel>`), or `tcp://host:port`.
        user, token: sent in `hello` for the server's connect handler (`token`: the first
            connection token).
        token_refresh: the app's source of new tokens, `async () -> str`: called shortly
            before the token expires (about 80% into the time it had left, at least 1 s
            before), to send the server a `refresh`; and when the server closed the
            connection because the token expired (4005), to come back with a new one. None:
            an expired token closes the client (`ClientClosed(4005)`).
        transports: names tried in order on every (re)connection, starting from the last one
            that worked; default websocket, sse, stream, longpoll, polling (tcp for tcp://).
        reconnect: come back after a drop (1006) or a "reconnect" close code (1001, 1011,
            4000-4099 but 4004), resuming the session and every subscription.
        reconnect_delay, reconnect_delay_max: attempt n waits uniform(0, min(max,
            delay * 2**(n-1))) seconds (exponential backoff, full jitter).
        max_reconnect_attempts: attempts after one drop before giving up (None: no bound).
        connect_timeout: bound of one transport's connect + `welcome` (a welcome later
            than that is a lost connection: the client tries again). A stream (stream,
            sse) silent for one of the welcome's `heartbeat` intervals is pinged, after
            two it is dropped and resumed the same way.
        request_timeout: bound of one request's answer (then `RequestFailed("timeout")`).
        send_timeout: (HTTP transports) bound of one upload, `POST E/send`, plus the time
            its body takes at 16 KiB/s (the server's default `min_receive_rate`): one not
            answered in time is abandoned and its connection closed, and fails as a cut
            one does (a request: retried as `unavailable`; `send()`: `disconnected`, not
            sent again, it may have arrived).
        poll_margin: (longpoll, polling) a poll not answered this long after the time the
            server holds it (the welcome's `longpoll_timeout`; 0 for polling) is abandoned
            and the connection counts as lost: the client resumes, losing nothing. Leave
            room for a poll forwarded to the session's node (`forward_timeout`, 5 s).
        max_queue: messages received and not yet read; when full the client stops reading
            from the connection (backpressure, nothing dropped; see the module docstring).
        poll_interval: the `polling` transport's pause after an empty poll.
        ssl_context: for wss://, https:// and tcps:// URLs.
        inbox_since: an earlier client's `inbox_position` (e.g. kept on disk): the user's
            direct messages after it come first (or a `Gap`). None: from now on.
        retry: how re-subscriptions, publishes and sends that failed for a retryable reason
            are retried before they are given up (`RetryPolicy`: attempts, backoff).
        on_error: called with each `Failure`, once given up (see the module docstring); an
            exception it raises is logged.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        token: str | None = None,
        token_refresh: Callable[[], Awaitable[str]] | None = None,
        transports: Sequence[str] | None = None,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 10.0,
        max_reconnect_attempts: int | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        max_queue: int = 10_000,
        poll_interval: float = 1.0,
        send_timeout: float = 10.0,
        poll_margin: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        retry: RetryPolicy | None = None,
        on_error: Callable[[Failure], None] | None = None,
        inbox_since: tuple[str, int] | None = None,
    ) -> None:
        self.request_timeout = request_timeout
        self._directs = DirectPosition(inbox_since)
        self.retry = retry or RetryPolicy()
        self.on_error = on_error
        self._generation = 0  # connections welcomed so far: a re-subscription is for one
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection = Connection(
            url,
            user=user,
            token=token,
            transports=transports,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
            max_reconnect_attempts=max_reconnect_attempts,
            connect_timeout=connect_timeout,
            poll_interval=poll_interval,
            send_timeout=send_timeout,
            poll_margin=poll_margin,
            ssl_context=ssl_context,
            receive=self._receive,
            connected=self._connected,
            dropped=lambda reason: self._requests.disconnected(reason),
            closed=self._finish,
            token_refresh=token_refresh,
            backoff=self._report,
        )
        self._connection.inbox = self._directs.hello
        self._requests = Requests(self._connection, request_timeout)
        self._refresh = TokenRefresh(self._connection, self._requests)
        self._subscriptions = Subscriptions()
        self._roster = Roster(max_queue)
        self._inbox = Inbox(max_queue)
        #: Who is in each channel subscribed with presence=True (the latest `Presence`).
        self.presence: dict[str, Presence] = self._roster.channels

    # -- the connection, as the application sees it ------------------------------------------

    @property
    def url(self) -> str:
        """The server's URL, as given."""
        return self._connection.url

    @property
    def user(self) -> str | None:
        """The user id: as given, or as the server's `welcome` said."""
        return self._connection.user

    @property
    def transports(self) -> tuple[str, ...]:
        """The transports tried, in order."""
        return self._connection.transports

    @property
    def transport(self) -> str:
        """The name of the transport in use."""
        return self._connection.transport

    @property
    def session(self) -> str | None:
        """The session id the server gave (None before the first `welcome`)."""
        return self._connection.session

    @property
    def expires(self) -> float | None:
        """When the session's token expires (seconds since the epoch), as the server last
        said (welcome, refreshed); None: never, or no token."""
        return self._connection.expires

    @property
    def inbox_position(self) -> tuple[str, int] | None:
        """The (epoch, offset) of the last direct message this client has (`inbox_since`)."""
        return self._directs.position

    @property
    def expired(self) -> list[str]:
        """Session ids the server said were gone when this client came back."""
        return self._connection.expired

    @property
    def reconnections(self) -> int:
        """Successful reconnections so far (the first connection is not one)."""
        return self._connection.reconnections

    # -- public API ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (trying the transports in order). Raises `ClientClosed` when none works
        or the server refuses."""
        await self._connection.open()

    async def subscribe(
        self, channel: str, presence: bool = False, rewind: int = 0
    ) -> Subscription:
        """Join `channel` (again: a no-op that may change `presence`); its last `rewind`
        messages from history first (a `Gap` for those it no longer holds). From here on the
        channel is re-subscribed on every reconnection, from the last position seen.

        Raises:
            RequestFailed: `bad_request` (invalid name), `forbidden`, `limit`, `unavailable`
                (after the retries), or `timeout` / `disconnected` (then the client keeps the
                subscription and makes it on reconnection).
        """
        await self._connection.wait_ready(self.request_timeout)
        # Known before the answer: the reader takes the position from `subscribed` and
        # tracks the messages right behind it, before this coroutine runs again.
        created = self._subscriptions.add(channel, presence, rewind)
        snapshots = self._roster.snapshots(channel)
        try:
            answer = await retrying(
                self.retry,
                lambda: self._requests.request(self._subscriptions.envelope(channel)),
                self._report,
                "subscribe",
                channel,
                retryable=("unavailable",),
            )
        except RequestFailed as failed:
            if created is not None and failed.code not in ("timeout", "disconnected"):
                self._subscriptions.remove(channel, created)
            raise
        if presence:
            # The members follow the answer: subscribe returns once they are known.
            await self._roster.next_snapshot(channel, snapshots, self.request_timeout)
        return Subscription(channel, answer["epoch"], answer["offset"])

    async def unsubscribe(self, channel: str) -> None:
        """Leave `channel`; messages already under way may still arrive. Raises
        `RequestFailed`."""
        self._subscriptions.remove(channel)
        self._roster.forget(channel)
        await self._requests.request({"type": "unsubscribe", "channel": channel})

    async def fetch_presence(self, channel: str) -> Presence:
        """Ask the server who is in `channel` now (a channel this client is subscribed to,
        with or without presence). Raises `RequestFailed`."""
        answer = await self._requests.request({"type": "presence", "channel": channel})
        return parse_presence(answer)

    async def publish(
        self, channel: str, data: str | bytes, *, idempotency_key: str | None = None
    ) -> tuple[str, int]:
        """Publish `data` (str: text, bytes: binary) to `channel`, subscribed or not;
        returns the message's (epoch, offset). It carries `idempotency_key` (default: a
        random one) on every attempt: retried after `unavailable`, `timeout` or
        `disconnected` (`retry`), it is published once (within the server's
        `idempotency_ttl`, a repeat answers the first one's position).

        Raises:
            RequestFailed: refused (`too_large`, `forbidden`, `bad_request`), or given up
                after the retries (`on_error` was told).
        """
        key = idempotency_key if idempotency_key is not None else secrets.token_urlsafe(16)

        def attempt() -> Awaitable[Envelope]:
            envelope = {"type": "publish", "channel": channel, "idempotency_key": key}
            return self._requests.request(envelope, data)

        answer = await retrying(self.retry, attempt, self._report, "publish", channel)
        return answer["epoch"], answer["offset"]

    async def send(self, data: str | bytes) -> None:
        """A message to the endpoint (echoed on /echo, published on /ws/<channel>, given to
        the app on /pushwire). No answer: a refusal is a `Failure` (`server`) in the message
        stream and at `on_error`. Without a connection it waits for one (`retry`); once
        written it is not sent again.

        Raises:
            ClientClosed: the client is closed.
            RequestFailed: `disconnected`: no connection within the retries, or the
                connection dropped while sending, or (HTTP transports) its upload was not
                answered within `send_timeout` (it may or may not have arrived).
        """
        item = with_data({"type": "send"}, data)
        await retrying(
            self.retry,
            lambda: self._connection.wait_ready(self.request_timeout),
            self._report,
            "send",
        )
        await self._connection.send([item])

    async def wait_reconnected(self, timeout: float | None = None) -> None:
        """Until the client has come back after the next drop (or `timeout` passes)."""
        await self._connection.wait_reconnected(timeout)

    async def wait_presence(
        self,
        channel: str,
        count: int | None = None,
        timeout: float | None = None,
        *,
        until: Callable[[Presence], bool] | None = None,
    ) -> Presence:
        """Until `channel` (subscribed with `presence=True`) has `count` sessions and
        `until(presence)` is true (either may be left out); `client.presence` holds the
        latest of each channel.

        Raises:
            TimeoutError: `timeout` passed first.
            ClientClosed: the client closed first.
        """
        return await self._roster.wait(channel, count, until, timeout)

    def presence_events(self) -> PresenceEvents:
        """Every `Join` and `Leave` of the channels subscribed with presence, from the time
        of the call, until the client closes (`async for event in client.presence_events()`).
        Events beyond `max_queue` unread ones are dropped with a warning: `client.presence`
        stays right regardless. `aclose()` the iterator to stop listening."""
        return self._roster.events()

    async def recv(self) -> Message | Gap | Failure:
        """The next message (or `Gap`, or `Failure`: something given up, see the module
        docstring). Raises `ClientClosed` once the client is closed and everything received
        was read. Cancelling it loses no message (the message stays in the inbox for the
        next call)."""
        return await self._inbox.get()

    def __aiter__(self) -> AsyncIterator[Message | Gap | Failure]:
        return self

    async def __anext__(self) -> Message | Gap | Failure:
        try:
            return await self.recv()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """End the session and the connection. Messages already received stay readable."""
        await self._connection.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- what the connection reports -----------------------------------------------------------

    async def _receive(self, envelope: Envelope, data: bytes | None) -> None:
        kind = envelope["type"]
        if kind == "message":
            await self._message(envelope, data)
        elif kind == "gap":
            lost = self._subscriptions if "channel" in envelope else self._directs
            if (gap := lost.skip(envelope)) is not None:  # None: passed already
                await self._inbox.put(gap)
        elif kind == "presence" and "id" not in envelope:  # a snapshot, not an answer
            if envelope["channel"] in self._subscriptions:  # else unsubscribed meanwhile
                self._roster.snapshot(parse_presence(envelope))
        elif kind in ("join", "leave"):
            self._roster.change(envelope)
        elif kind == "error" and "id" not in envelope:
            if envelope.get("code") != "token_expired":  # else closed next (4005): handled
                code, message = str(envelope.get("code")), str(envelope.get("message"))
                await self._fail(Failure("server", code, message))
        else:
            if kind == "subscribed":
                self._subscriptions.subscribed(envelope)
            self._requests.answer(envelope)

    async def _message(self, envelope: Envelope, data: bytes | None) -> None:
        payload = message_data(envelope, data)
        channel = envelope.get("channel")
        if channel is not None:
            epoch, offset = envelope["epoch"], envelope["offset"]
            if self._subscriptions.fresh(channel, epoch, offset):
                await self._inbox.put(Message(payload, channel, epoch, offset))
            return
        for item in self._directs.received(payload, envelope):
            await self._inbox.put(item)

    def _connected(self) -> None:
        self._directs.started(self._connection.welcome.get("inbox"))
        self._generation += 1
        for channel in self._subscriptions.channels():
            task = asyncio.ensure_future(self._resubscribe(channel, self._generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._refresh.plan()

    async def _resubscribe(self, channel: str, generation: int) -> None:
        """Subscribe `channel` again on the connection `generation`, from its last position,
        retrying `unavailable` and `timeout`; given up or refused, the channel is no longer
        subscribed and the app is told (`Failure` `subscribe`). A drop ends it: the next
        connection subscribes again."""
        state = self._subscriptions.get(channel)

        def current() -> bool:
            return generation == self._generation and self._subscriptions.get(channel) is state

        async def attempt() -> Envelope:
            if not current():
                raise RequestFailed("disconnected", "superseded")
            return await self._requests.request(self._subscriptions.envelope(channel))

        given_up: list[Failure] = []
        try:
            await retrying(
                self.retry,
                attempt,
                given_up.append,
                "subscribe",
                channel,
                retryable=("unavailable", "timeout"),
            )
        except ClientClosed:
            return
        except RequestFailed as failed:
            if failed.code == "disconnected" or not current():
                return
            assert state is not None
            self._subscriptions.remove(channel, state)
            self._roster.forget(channel)
            failure = given_up[0] if given_up else None
            await self._fail(failure or Failure("subscribe", failed.code, failed.message, channel))

    def _report(self, failure: Failure) -> None:
        """Tell the app's `on_error` (a failure of its own is logged, not raised here)."""
        where = f" ({failure.channel})" if failure.channel else ""
        log.warning("%s%s failed: %s", failure.operation, where, failure.code)
        callback = self.on_error
        if callback is not None:
            try:
                callback(failure)
            except Exception:
                log.exception("on_error callback failed")

    async def _fail(self, failure: Failure) -> None:
        """`_report`, and the failure in the message stream (no awaited call raises it)."""
        self._report(failure)
        await self._inbox.put(failure)

    def _finish(self, closed: ClientClosed) -> None:
        for task in self._tasks:
            task.cancel()
        self._refresh.cancel()
        self._requests.disconnected(str(closed))
        self._roster.close(closed)
        self._inbox.close(closed)


connect = connecting(Client)
