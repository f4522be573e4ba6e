"""The asyncio client: one `Client` per connection to a pushwire server, over any transport.

Guarantees: messages of one channel arrive in offset order and direct messages in `seq` order,
each at most once, across reconnections and transport changes (the client resumes its session,
re-subscribes each channel from the last position it saw, and drops anything it has seen).
What history could not keep arrives as a `Gap`. Cancelling `recv()` loses no message.

Presence: a channel subscribed with `presence=True` has its members in `client.presence`,
kept up to date by the server's `join` and `leave`; `presence_events()` yields those as
`Join` / `Leave`. After a reconnection the server sends the members again; the client
compares, and what changed while it was away is yielded as joins and leaves too.

Backpressure: messages wait in an inbox of `max_queue` entries until `recv()` takes them. When
it is full the client stops reading from the connection (nothing is dropped): the socket's
buffers fill and the server sees a slow consumer, whose own bounds then apply (close 4001,
after which the client reconnects and recovers from history). Answers to requests come on the
same connection behind those messages, so a request made while the inbox is full waits until
the application reads (or fails with `timeout`): read from a task of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .errors import (
    ClientClosed,
    ConnectionLost,
    Gap,
    Join,
    Leave,
    Member,
    Message,
    Presence,
    RequestFailed,
    Subscription,
)
from .transports import ClientTransport, Envelope, Item, make_transport

__all__ = ["Client", "PresenceEvents", "connect"]

log = logging.getLogger("pushwire.client")

DEFAULT_HTTP_TRANSPORTS = ("websocket", "sse", "stream", "longpoll", "polling")


def _reconnectable(code: int) -> bool:
    """docs/protocol.md: 4000-4099 (but 4004), 1001, 1006 and 1011 mean "come back"."""
    return code in (1001, 1006, 1011) or (4000 <= code < 4100 and code != 4004)


@dataclass(slots=True)
class _Channel:
    presence: bool
    epoch: str | None = None
    offset: int = 0


class Client:
    """A connection to a pushwire server; see `connect()` for the arguments."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        token: str | None = None,
        transports: Sequence[str] | None = None,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 10.0,
        max_reconnect_attempts: int | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        max_queue: int = 10_000,
        poll_interval: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme
        self.url = url
        self.user = user
        self.token = token
        default = ("tcp",) if scheme in ("tcp", "tcps") else DEFAULT_HTTP_TRANSPORTS
        self.transports = tuple(transports or default)
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.max_reconnect_attempts = max_reconnect_attempts
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.ssl_context = ssl_context
        #: Who is in each channel subscribed with presence=True (the latest `Presence`).
        self.presence: dict[str, Presence] = {}
        self._presence_changed = asyncio.Event()
        self._presence_listeners: set[asyncio.Queue[Join | Leave]] = set()
        self._snapshots: dict[str, int] = {}  # presence snapshots received per channel
        self._max_queue = max_queue
        #: Session ids the server said were gone when this client came back.
        self.expired: list[str] = []
        self.session: str | None = None
        #: Successful reconnections so far (the first connection is not one).
        self.reconnections = 0
        self._reconnected = asyncio.Condition()
        self._transport: ClientTransport | None = None
        self._preferred = 0
        self._inbox: asyncio.Queue[Message | Gap | ClientClosed] = asyncio.Queue(max_queue)
        self._requests: dict[int, asyncio.Future[Envelope]] = {}
        self._next_id = 0
        self._channels: dict[str, _Channel] = {}
        self._seq = 0
        self._ack_pending = False
        self._ready = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._closed: ClientClosed | None = None
        self._closing = False
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- public API ------------------------------------------------------------------------

    @property
    def transport(self) -> str:
        """The name of the transport in use."""
        return self._transport.name if self._transport is not None else self.transports[0]

    async def open(self) -> None:
        """Connect (trying the transports in order). Raises `ClientClosed` when none works
        or the server refuses."""
        try:
            await self._connect(first=True)
        except ConnectionLost as lost:
            raise ClientClosed(lost.code, lost.reason) from None
        self._reader = asyncio.ensure_future(self._read())

    async def subscribe(self, channel: str, presence: bool = False) -> Subscription:
        """Join `channel` (again: a no-op that may change `presence`). From here on the
        channel is re-subscribed on every reconnection, from the last position seen.

        Raises:
            RequestFailed: `bad_request` (invalid name), `forbidden`, `limit`, or `timeout` /
                `disconnected` (then the client keeps the subscription and makes it on
                reconnection).
        """
        await self._wait_ready()
        state = self._channels.get(channel)
        created = state is None
        if state is None:
            # Known before the answer: the reader takes the position from `subscribed` and
            # tracks the messages right behind it, before this coroutine runs again.
            state = self._channels[channel] = _Channel(presence)
        state.presence = presence
        envelope: Envelope = {"type": "subscribe", "channel": channel, "presence": presence}
        if state.epoch is not None:
            envelope["since"] = {"epoch": state.epoch, "offset": state.offset}
        snapshots = self._snapshots.get(channel, 0)
        try:
            answer = await self._request(envelope)
        except RequestFailed as failed:
            refused = failed.code not in ("timeout", "disconnected")
            if created and refused and self._channels.get(channel) is state:
                del self._channels[channel]
            raise
        if presence:
            # The members follow the answer: subscribe returns once they are known.
            try:
                async with asyncio.timeout(self.request_timeout):
                    while self._snapshots.get(channel, 0) == snapshots:
                        if self._closed is not None:
                            raise self._closed
                        await self._presence_changed.wait()
            except TimeoutError:
                raise RequestFailed("timeout", "no presence after subscribing") from None
        return Subscription(channel, answer["epoch"], answer["offset"])

    async def unsubscribe(self, channel: str) -> None:
        """Leave `channel`; messages already under way may still arrive. Raises
        `RequestFailed`."""
        self._channels.pop(channel, None)
        self.presence.pop(channel, None)
        await self._request({"type": "unsubscribe", "channel": channel})

    async def fetch_presence(self, channel: str) -> Presence:
        """Ask the server who is in `channel` now (a channel this client is subscribed to,
        with or without presence). Raises `RequestFailed`."""
        answer = await self._request({"type": "presence", "channel": channel})
        return _presence(answer)

    async def publish(self, channel: str, data: str | bytes) -> tuple[str, int]:
        """Publish `data` (str: text, bytes: binary) to `channel`, subscribed or not;
        returns the message's (epoch, offset). Raises `RequestFailed` (e.g. `too_large`)."""
        answer = await self._request({"type": "publish", "channel": channel}, data)
        return answer["epoch"], answer["offset"]

    async def send(self, data: str | bytes) -> None:
        """A message to the endpoint (echoed on /echo, published on /ws/<channel>, given to
        the app on /pushwire). No answer. Raises `ClientClosed`, `RequestFailed`."""
        await self._wait_ready()
        await self._send([(*self._with_data({"type": "send"}, data),)])

    async def wait_reconnected(self, timeout: float | None = None) -> None:
        """Until the client has come back after the next drop (or `timeout` passes)."""
        async with self._reconnected:
            target = self.reconnections + 1
            await asyncio.wait_for(
                self._reconnected.wait_for(lambda: self.reconnections >= target), timeout
            )

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

        def done() -> Presence | None:
            presence = self.presence.get(channel)
            if presence is None or (count is not None and presence.count != count):
                return None
            return presence if until is None or until(presence) else None

        async def reached() -> Presence:
            while (presence := done()) is None:
                if self._closed is not None:
                    raise self._closed
                await self._presence_changed.wait()
            return presence

        return await asyncio.wait_for(reached(), timeout)

    def presence_events(self) -> PresenceEvents:
        """Every `Join` and `Leave` of the channels subscribed with presence, from the time
        of the call, until the client closes (`async for event in client.presence_events()`).
        Events beyond `max_queue` unread ones are dropped with a warning: `client.presence`
        stays right regardless. `aclose()` the iterator to stop listening."""
        return PresenceEvents(self)

    async def recv(self) -> Message | Gap:
        """The next message (or `Gap`). Raises `ClientClosed` once the client is closed and
        everything received was read. Cancelling it loses no message (the message stays in
        the inbox for the next call)."""
        if self._closed is not None and self._inbox.empty():
            raise self._closed
        item = await self._inbox.get()
        if isinstance(item, ClientClosed):
            self._inbox.put_nowait(item)  # every later call raises too
            raise item
        return item

    def __aiter__(self) -> AsyncIterator[Message | Gap]:
        return self

    async def __anext__(self) -> Message | Gap:
        try:
            return await self.recv()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """End the session and the connection. Messages already received stay readable."""
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
        self._finish(ClientClosed(1000, "closed by the client"))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connecting --------------------------------------------------------------------------

    async def _connect(self, *, first: bool) -> None:
        """One round over the transports, from the last one that worked."""
        order = self.transports[self._preferred :] + self.transports[: self._preferred]
        failures = []
        for name in order:
            try:
                await self._connect_with(name)
            except ConnectionLost as lost:
                failures.append(f"{name}: {lost}")
                if not _reconnectable(lost.code) and lost.code != 1006:
                    raise ClientClosed(lost.code, lost.reason) from None
                continue
            self._preferred = self.transports.index(name)
            return
        raise ConnectionLost(1006, "no transport worked (" + "; ".join(failures) + ")")

    async def _connect_with(self, name: str) -> None:
        transport = make_transport(
            name, self.url, ssl_context=self.ssl_context, poll_interval=self.poll_interval
        )
        hello: Envelope = {
            "type": "hello",
            "user": self.user,
            "token": self.token,
            "session": self.session,
            "ack": self._seq,
        }
        try:
            await transport.open(hello, self.connect_timeout)
            welcome = await asyncio.wait_for(self._welcome(transport), self.connect_timeout)
        except (TimeoutError, ConnectionLost):
            with contextlib.suppress(Exception):
                await transport.close()
            raise
        if welcome.get("expired") is not None:
            self.expired.append(welcome["expired"])
            self._seq = 0  # a new session counts direct messages from 1 again
        self.session = welcome["session"]
        self.user = welcome.get("user", self.user)
        self._transport = transport
        transport.ack = self._seq
        self._ready.set()
        for channel, state in self._channels.items():
            self._resubscribe(channel, state)

    async def _welcome(self, transport: ClientTransport) -> Envelope:
        while True:
            envelope, _ = await transport.receive()
            kind = envelope["type"]
            if kind == "welcome":
                return envelope
            if kind == "error":
                code = 4101 if envelope.get("code") == "forbidden" else 4100
                raise ConnectionLost(code, str(envelope.get("message", "")))
            if kind == "close":
                raise ConnectionLost(int(envelope.get("code", 1006)), str(envelope.get("reason")))

    def _resubscribe(self, channel: str, state: _Channel) -> None:
        envelope: Envelope = {"type": "subscribe", "channel": channel, "presence": state.presence}
        if state.epoch is not None:
            envelope["since"] = {"epoch": state.epoch, "offset": state.offset}
        future = self._register(envelope)
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self._spawn(self._send_quietly([(envelope, None)]))

    async def _reconnect(self, lost: ConnectionLost) -> bool:
        """Come back after a drop, with backoff. False when the client must stop."""
        self._ready.clear()
        self._fail_requests("disconnected", f"the connection dropped ({lost.code})")
        if self._transport is not None:
            with contextlib.suppress(Exception):
                await self._transport.close()
        attempt = 0
        while not self._closing:
            attempt += 1
            if self.max_reconnect_attempts is not None and attempt > self.max_reconnect_attempts:
                return False
            bound = min(self.reconnect_delay_max, self.reconnect_delay * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(0, bound))  # full jitter
            try:
                await self._connect(first=False)
                async with self._reconnected:
                    self.reconnections += 1
                    self._reconnected.notify_all()
                return True
            except ConnectionLost as again:
                log.debug("reconnect attempt %d failed: %s", attempt, again)
            except ClientClosed:
                return False
        return False

    # -- receiving -----------------------------------------------------------------------------

    def _stopping(self) -> bool:
        # A method, not the attribute: close() sets it while this task awaits.
        return self._closing

    async def _read(self) -> None:
        while not self._stopping():
            transport = self._transport
            assert transport is not None
            try:
                envelope, data = await transport.receive()
                if envelope["type"] == "close":
                    raise ConnectionLost(
                        int(envelope.get("code", 1006)), str(envelope.get("reason"))
                    )
            except ConnectionLost as lost:
                if self._stopping():
                    return
                if not (self.reconnect and _reconnectable(lost.code)):
                    self._finish(ClientClosed(lost.code, lost.reason))
                    return
                if not await self._reconnect(lost):
                    self._finish(ClientClosed(lost.code, lost.reason))
                    return
                continue
            await self._handle(envelope, data)

    async def _handle(self, envelope: Envelope, data: bytes | None) -> None:
        kind = envelope["type"]
        if kind == "message":
            await self._message(envelope, data)
        elif kind in ("subscribed", "unsubscribed", "published", "pong"):
            if kind == "subscribed":
                state = self._channels.get(envelope.get("channel", ""))
                if state is not None and state.epoch is None:
                    state.epoch, state.offset = envelope["epoch"], envelope["offset"]
            future = self._requests.pop(envelope.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(envelope)
        elif kind == "error":
            future = self._requests.pop(envelope.get("id", -1), None)
            error = RequestFailed(str(envelope.get("code")), str(envelope.get("message")))
            if future is not None and not future.done():
                future.set_exception(error)
            else:
                log.warning("server error: %s", error)
        elif kind == "presence":
            if "id" in envelope:  # the answer to fetch_presence
                future = self._requests.pop(envelope["id"], None)
                if future is not None and not future.done():
                    future.set_result(envelope)
                return
            self._snapshot(_presence(envelope))
        elif kind in ("join", "leave"):
            self._change(envelope)
        elif kind == "gap":
            start, end = envelope["from"], envelope["to"]
            state = self._channels.get(envelope["channel"])
            if state is not None:
                state.epoch, state.offset = end["epoch"], end["offset"]
            await self._inbox.put(
                Gap(
                    envelope["channel"],
                    start["epoch"],
                    start["offset"],
                    end["epoch"],
                    end["offset"],
                )
            )

    async def _message(self, envelope: Envelope, data: bytes | None) -> None:
        payload: str | bytes
        if data is not None:
            payload = data
        elif "data64" in envelope:
            payload = base64.b64decode(envelope["data64"])
        else:
            payload = envelope.get("data", "")
        channel = envelope.get("channel")
        if channel is not None:
            state = self._channels.get(channel)
            epoch, offset = envelope["epoch"], envelope["offset"]
            if state is not None:
                if state.epoch == epoch and offset <= state.offset:
                    return  # seen already (a replay after a resumption)
                state.epoch, state.offset = epoch, offset
            await self._inbox.put(Message(payload, channel, epoch, offset))
            return
        seq = envelope.get("seq")
        if isinstance(seq, int):
            if seq <= self._seq:
                return  # re-sent after a resumption, seen already
            self._seq = seq
            self._acknowledge()
        await self._inbox.put(Message(payload, seq=seq))

    def _acknowledge(self) -> None:
        transport = self._transport
        if transport is not None and transport.piggybacks_ack:
            transport.ack = self._seq  # rides on the next poll
        elif not self._ack_pending:
            self._ack_pending = True
            asyncio.get_running_loop().call_soon(self._send_ack)

    def _send_ack(self) -> None:
        self._ack_pending = False
        self._spawn(self._send_quietly([({"type": "ack", "seq": self._seq}, None)]))

    def _snapshot(self, presence: Presence) -> None:
        """The server's list of members: what changed since the last one (while this client
        was away) is news for `presence_events()`."""
        channel = presence.channel
        if channel not in self._channels:
            return  # unsubscribed meanwhile
        before = self.presence.get(channel)
        self.presence[channel] = presence
        self._snapshots[channel] = self._snapshots.get(channel, 0) + 1
        if before is not None:
            for member in presence.members.keys() - before.members.keys():
                self._announce(Join(channel, presence.members[member], presence.count))
            if not before.truncated and not presence.truncated:
                for member in before.members.keys() - presence.members.keys():
                    self._announce(Leave(channel, before.members[member], presence.count))
        self._notify_presence()

    def _change(self, envelope: Envelope) -> None:
        channel = envelope["channel"]
        presence = self.presence.get(channel)
        if presence is None:
            return
        member = _member(envelope["member"])
        members = dict(presence.members)
        event: Join | Leave
        if envelope["type"] == "join":
            members[member.member] = member
            event = Join(channel, member, int(envelope["count"]))
        else:
            members.pop(member.member, None)
            event = Leave(channel, member, int(envelope["count"]))
        truncated = presence.truncated and event.count > len(members)
        self.presence[channel] = Presence(channel, event.count, members, truncated)
        self._announce(event)
        self._notify_presence()

    def _announce(self, event: Join | Leave) -> None:
        for queue in self._presence_listeners:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("presence event dropped: %d unread already", queue.qsize())

    def _notify_presence(self) -> None:
        # One Event per change: every waiter wakes, later waiters wait for the next one.
        changed, self._presence_changed = self._presence_changed, asyncio.Event()
        changed.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending ---------------------------------------------------------------------------------

    def _register(self, envelope: Envelope) -> asyncio.Future[Envelope]:
        self._next_id += 1
        envelope["id"] = self._next_id
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._requests[self._next_id] = future
        return future

    async def _request(self, envelope: Envelope, data: str | bytes | None = None) -> Envelope:
        await self._wait_ready()
        future = self._register(envelope)
        items: list[Item] = [
            self._with_data(envelope, data) if data is not None else (envelope, None)
        ]
        try:
            await self._send(items)
            return await asyncio.wait_for(asyncio.shield(future), self.request_timeout)
        except TimeoutError:
            raise RequestFailed("timeout", f"no answer within {self.request_timeout} s") from None
        finally:
            self._requests.pop(envelope["id"], None)

    def _with_data(self, envelope: Envelope, data: str | bytes) -> Item:
        if isinstance(data, str):
            return {**envelope, "data": data}, None
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be str or bytes, not {type(data).__name__}")
        return envelope, bytes(data)

    async def _wait_ready(self) -> None:
        if self._closed is not None:
            raise self._closed
        try:
            await asyncio.wait_for(self._ready.wait(), self.request_timeout)
        except TimeoutError:
            raise RequestFailed("disconnected", "not connected") from None

    async def _send(self, items: list[Item]) -> None:
        transport = self._transport
        if transport is None:
            raise RequestFailed("disconnected", "not connected")
        async with self._send_lock:
            try:
                await transport.send(items)
            except ConnectionLost as lost:
                raise RequestFailed("disconnected", str(lost)) from None

    async def _send_quietly(self, items: list[Item]) -> None:
        with contextlib.suppress(RequestFailed):
            await self._send(items)

    def _fail_requests(self, code: str, message: str) -> None:
        requests, self._requests = self._requests, {}
        for future in requests.values():
            if not future.done():
                future.set_exception(RequestFailed(code, message))

    def _finish(self, closed: ClientClosed) -> None:
        if self._closed is not None:
            return
        self._closed = closed
        self._ready.clear()
        self._fail_requests("disconnected", str(closed))
        self._notify_presence()
        # The end marker wakes a recv() waiting on an empty inbox. A full inbox has no
        # waiter, and recv() raises by itself once it has emptied it.
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(closed)


def _member(fields: dict[str, Any]) -> Member:
    info = fields.get("info")
    return Member(str(fields["member"]), fields.get("user"), info if isinstance(info, dict) else {})


def _presence(envelope: Envelope) -> Presence:
    members = {}
    for fields in envelope.get("members", ()):
        member = _member(fields)
        members[member.member] = member
    return Presence(
        envelope["channel"], int(envelope["count"]), members, bool(envelope.get("truncated"))
    )


class PresenceEvents:
    """What `Client.presence_events()` returns: an async iterator of `Join` and `Leave`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: asyncio.Queue[Join | Leave] = asyncio.Queue(client._max_queue)
        client._presence_listeners.add(self._queue)

    def __aiter__(self) -> PresenceEvents:
        return self

    async def __anext__(self) -> Join | Leave:
        client, queue = self._client, self._queue
        while queue.empty():
            if client._closed is not None or queue not in client._presence_listeners:
                raise StopAsyncIteration
            await client._presence_changed.wait()
        return queue.get_nowait()

    async def aclose(self) -> None:
        self._client._presence_listeners.discard(self._queue)
        self._client._notify_presence()


class _Connecting:
    """What `connect()` returns: await it, or use it with `async with`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def _open(self) -> Client:
        await self.client.open()
        return self.client

    async def __aenter__(self) -> Client:
        return await self._open()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.close()


def connect(
    url: str,
    *,
    user: str | None = None,
    token: str | None = None,
    transports: Sequence[str] | None = None,
    reconnect: bool = True,
    reconnect_delay: float = 0.5,
    reconnect_delay_max: float = 10.0,
    max_reconnect_attempts: int | None = None,
    connect_timeout: float = 10.0,
    request_timeout: float = 10.0,
    max_queue: int = 10_000,
    poll_interval: float = 1.0,
    ssl_context: ssl.SSLContext | None = None,
) -> _Connecting:
    """Connect to a pushwire server: `client = await connect(...)`, or
    `async with connect(...) as client:` (which closes it at the end).

    Args:
        url: `ws://host:port/pushwire`, `http://…` (the same endpoint; any pushwire.v1
            endpoint, e.g. `/echo` or `/ws/<channel>`), or `tcp://host:port`.
        user, token: sent in `hello` for the server's connect handler.
        transports: names tried in order on every (re)connection, starting from the last one
            that worked; default websocket, sse, stream, longpoll, polling (tcp for tcp://).
        reconnect: come back after a drop (1006) or a "reconnect" close code (1001, 1011,
            4000-4099 but 4004), resuming the session and every subscription.
        reconnect_delay, reconnect_delay_max: attempt n waits uniform(0, min(max,
            delay * 2**(n-1))) seconds (exponential backoff, full jitter).
        max_reconnect_attempts: attempts after one drop before giving up (None: no bound).
        connect_timeout: bound of one transport's connect + `welcome`.
        request_timeout: bound of one request's answer (then `RequestFailed("timeout")`).
        max_queue: messages received and not yet read; when full the client stops reading
            from the connection (backpressure, nothing dropped; see the module docstring).
        poll_interval: the `polling` transport's pause after an empty poll.
        ssl_context: for wss://, https:// and tcps:// URLs.

    Raises (when awaited):
        ClientClosed: no transport could connect, or the server refused the connection.
        ValueError: an unknown transport name, or one the URL's scheme cannot carry.
    """
    return _Connecting(
        Client(
            url,
            user=user,
            token=token,
            transports=transports,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
            max_reconnect_attempts=max_reconnect_attempts,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            max_queue=max_queue,
            poll_interval=poll_interval,
            ssl_context=ssl_context,
        )
    )
