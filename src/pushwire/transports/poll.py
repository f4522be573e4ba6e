"""The `polling` and `longpoll` transports: a per-session queue that GET requests drain.

`PollTransport` is the hub's `Transport` for a polling client for as long as the client keeps
polling. Frames (NDJSON lines, framed once and shared with every other poller) wait in a
queue; each frame has an index. A poll takes the frames after the cursor it acknowledges, and
they stay queued until a later poll acknowledges them, so a response lost in transit is simply
sent again. `polling` answers at once; `longpoll` holds the request until a frame arrives or
`longpoll_timeout` passes.

A held long-poll costs no task and no timer of its own: `hold` keeps one callback and a
deadline. The transports a loop turn's publishes reach are released by one `call_soon` (one
message to 10,000 held polls schedules one callback); one sweep every `SWEEP_PERIOD` seconds
(`PollTimers`, on the hub's clock) answers the held polls whose `longpoll_timeout` passed and
closes the clients whose `poll_grace` passed (no timer made and cancelled per poll).

`Polls` serves the requests: `E/polling` and `E/longpoll`, opening a session with a hello
(`POST` body, or `?hello=`), then `?cursor=C` (the frames the client has) with the session
and its secret in the `Pushwire-Session` header.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Iterator
from typing import Final

from ..clock import Clock, Timer
from ..config import Config
from ..core import Hub, Session
from ..core.transport import Framing, Receiver
from ..endpoint import Endpoint, EnvelopeHandler
from ..envelope import encode_text
from ..errors import NotConnected
from ..parsing import decimal
from ..web import Request, Response
from .http_session import NO_BUFFERING, HttpSessions, client_info, split_transport
from .stream import CONTENT_TYPE, NDJSON_FRAMING

__all__ = ["SWEEP_PERIOD", "PollBatch", "PollResponse", "PollTimers", "PollTransport", "Polls"]

#: How often held polls and idle clients are checked: their timeouts fire up to this late.
SWEEP_PERIOD: Final = 0.25


class PollBatch:
    """What one poll returns: the frames joined, and the cursor that acknowledges them."""

    __slots__ = ("body", "closed", "cursor")

    def __init__(self, body: bytes, cursor: int, closed: bool) -> None:
        self.body = body
        self.cursor = cursor
        self.closed = closed


class PollTransport:
    """A polling client's queue of frames, with cursor acknowledgement.

    Bounds: `max_frames` and `max_bytes` queued (unacknowledged); over either, the transport
    closes with 4001 (slow consumer), which its client answers by resuming the session.
    """

    framing: Framing = NDJSON_FRAMING
    # Slots and a list (an empty deque was 760 bytes): each polling client holds one.
    __slots__ = (
        "_bytes",
        "_first",
        "_frames",
        "_grace",
        "_hold_until",
        "_idle_until",
        "_on_close",
        "_release",
        "_release_due",
        "_timers",
        "close_code",
        "max_bytes",
        "max_frames",
        "name",
        "receiver",
    )

    def __init__(
        self,
        name: str,
        *,
        max_frames: int,
        max_bytes: int,
        on_close: Callable[[PollTransport, int, str], None],
        timers: PollTimers,
    ) -> None:
        self.name = name
        self._timers = timers
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: list[bytes] = []
        self._first = 1  # index of _frames[0]
        self._bytes = 0
        self._release: Callable[[], None] | None = None  # the held poll's answer
        self._release_due = False  # in the batch released on the next loop turn
        # Loop times (0.0: none): answer the held poll / close for want of a poll.
        self._hold_until = 0.0
        self._idle_until = 0.0
        self._grace = 0.0
        self._on_close = on_close
        self.close_code: int | None = None
        self.receiver: Receiver | None = None  # the session's envelope handler

    # -- hub side ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.close_code is not None or not data:
            return
        if len(self._frames) >= self.max_frames or self._bytes + len(data) > self.max_bytes:
            # The hub may be iterating its subscribers: close on the next loop turn, and keep
            # nothing more meanwhile.
            self.close_code = 4001
            asyncio.get_running_loop().call_soon(self._overflowed)
            return
        self._frames.append(data)
        self._bytes += len(data)
        if self._release is not None and not self._release_due:
            # Answer on the next loop turn: frames published in this turn share a response.
            self._release_due = True
            self._timers.release_soon(self)

    def buffered(self) -> int:
        """Bytes queued for the client (the memory budget, pushwire.core.budget)."""
        return self._bytes

    def shed(self, reason: str) -> None:
        """Closed for the memory budget: a slow consumer (4001)."""
        self.close(4001, reason)

    def _overflowed(self) -> None:
        self.close_code = None
        self.close(
            4001, f"slow consumer (> {self.max_frames} frames or {self.max_bytes} bytes queued)"
        )

    def close(self, code: int, reason: str) -> None:
        """Close: the next poll gets a `close` envelope; the session is detached now."""
        if self.close_code is not None:
            return
        self.disarm()
        self.close_code = code
        self._frames.append(encode_text({"type": "close", "code": code, "reason": reason}) + b"\n")
        self.release()
        self._on_close(self, code, reason)

    # -- HTTP side --------------------------------------------------------------------------

    def acknowledge(self, cursor: int) -> None:
        """The client has every frame up to index `cursor`."""
        frames = self._frames
        count = min(len(frames), cursor - self._first + 1)
        if count > 0:
            self._bytes -= sum(len(frame) for frame in frames[:count])
            del frames[:count]
            self._first += count

    def take(self) -> PollBatch:
        """Every queued frame after the acknowledged cursor (they stay until acknowledged)."""
        return PollBatch(
            b"".join(self._frames), self._first + len(self._frames) - 1, self.close_code is not None
        )

    @property
    def pending(self) -> bool:
        return bool(self._frames)

    @property
    def held(self) -> bool:
        """A poll is held, waiting for a frame (or its timeout)."""
        return self._release is not None

    def arm(self, grace: float) -> None:
        """After answering a poll: the client counts as gone if no poll comes within `grace`."""
        if self.close_code is None:
            timers = self._timers
            self._grace = grace
            self._idle_until = timers.clock.time() + grace
            timers.watch(self, self._idle_until)

    def disarm(self) -> None:
        """A poll is here (or held): the client is present."""
        self._idle_until = 0.0

    def hold(self, timeout: float, release: Callable[[], None]) -> None:
        """Call `release` on the next loop turn if frames are queued (or `timeout` <= 0, or
        closed), else once a frame is queued, the transport closes, or `timeout` passes. The
        turn's wait lets what is being published now (a broker delivers a turn or two after
        the publish was answered) join this answer. A new held poll releases the last."""
        self.release()
        timers = self._timers
        self._release = release
        if self._frames or timeout <= 0 or self.close_code is not None:
            self._release_due = True
            timers.release_soon(self)
        else:
            self._hold_until = timers.clock.time() + timeout
            timers.watch(self, self._hold_until)

    async def wait(self, timeout: float) -> None:
        """`hold` for a coroutine: until a frame is queued, the transport closes or `timeout`
        passes, and at least until the next loop turn. A newer wait or hold ends this one."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hold(timeout, functools.partial(_resolve, waiter))
        await waiter

    def release(self) -> None:
        """Answer the held poll now, if there is one."""
        release, self._release = self._release, None
        self._release_due = False
        self._hold_until = 0.0
        if release is not None:
            release()

    def _check(self, now: float) -> float:
        """The sweep: act on a passed deadline; the next one (0.0: none left)."""
        if self._hold_until and self._hold_until <= now:
            self.release()
        if self._idle_until and self._idle_until <= now:
            self._idle_until = 0.0
            self.close(4002, f"no poll within {self._grace} s")
        hold, idle = self._hold_until, self._idle_until
        return min(hold, idle) if hold and idle else hold or idle


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PollTimers:
    """One loop's batch of transports to release on its next turn, and the deadline sweep
    of every transport of a server (on `clock`)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._due: list[PollTransport] = []
        self._watched: set[PollTransport] = set()
        self._sweeper: Timer | None = None
        # No watched deadline is earlier than this: until then a sweep has nothing to check.
        # (Deadlines only move later while watched, as polls come and go.)
        self._earliest = math.inf

    def release_soon(self, transport: PollTransport) -> None:
        if not self._due:
            asyncio.get_running_loop().call_soon(self._release_due)
        self._due.append(transport)

    def _release_due(self) -> None:
        due, self._due = self._due, []
        for transport in due:
            if transport._release_due:
                transport.release()

    def watch(self, transport: PollTransport, deadline: float) -> None:
        self._watched.add(transport)
        if deadline < self._earliest:
            self._earliest = deadline
        if self._sweeper is None:
            self._sweeper = self.clock.call_later(SWEEP_PERIOD, self._sweep)

    def _sweep(self) -> None:
        now = self.clock.time()
        if now >= self._earliest:
            # A check may close a transport, and its handlers may watch another one: that
            # lowers self._earliest meanwhile, so it starts from infinity and is merged after.
            self._earliest = math.inf
            earliest = math.inf
            watched = self._watched
            for transport in list(watched):
                deadline = transport._check(now)
                if deadline:
                    earliest = min(earliest, deadline)
                else:
                    watched.discard(transport)
            self._earliest = min(self._earliest, earliest)
        self._sweeper = self.clock.call_later(SWEEP_PERIOD, self._sweep) if self._watched else None


class PollResponse(Response):
    """A poll's answer: the frames, and the cursor that acknowledges them in a header.

    Its headers are made only when asked for: the native server's common case (HTTP/1.1,
    keep-alive, no CORS) writes a head of constant bytes instead, one per poll answered.
    """

    __slots__ = ("_fields", "batch", "cors")

    def __init__(self, batch: PollBatch, cors: list[tuple[str, str]]) -> None:
        self.status = 200
        self.body = batch.body
        self.batch = batch
        self.cors = cors
        self._fields: list[tuple[str, str]] | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._fields is None:
            self._fields = [
                ("Content-Type", CONTENT_TYPE),
                ("Pushwire-Cursor", str(self.batch.cursor)),
                *NO_BUFFERING,
                *self.cors,
            ]
        return self._fields

    @headers.setter
    def headers(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields

    def encode(self, *, version: str, keep_alive: bool, head_only: bool) -> bytes:
        if self.cors or version != "1.1" or not keep_alive or head_only:
            return super().encode(version=version, keep_alive=keep_alive, head_only=head_only)
        batch = self.batch
        return b"%sPushwire-Cursor: %d\r\nContent-Length: %d\r\n\r\n%s" % (
            _POLL_HEAD,
            batch.cursor,
            len(batch.body),
            batch.body,
        )


# The constant start of a poll answer (HTTP/1.1, keep-alive, no CORS).
_POLL_HEAD: Final = (
    Response(200, content_type=CONTENT_TYPE, headers=NO_BUFFERING)
    .encode(version="1.1", keep_alive=True, head_only=True)
    .removesuffix(b"Content-Length: 0\r\n\r\n")
)


class Polls:
    """The `polling` and `longpoll` requests of every endpoint, for the sessions of this node.

    Bounds: `max_poll_frames` and `max_write_buffer` bytes queued per client (4001 over
    them); a client that does not poll within `poll_grace` is closed (4002); a long-poll is
    held at most `longpoll_timeout`.
    """

    def __init__(self, hub: Hub, config: Config, sessions: HttpSessions, clock: Clock) -> None:
        self.hub = hub
        self.config = config
        self.sessions = sessions
        self.clock = clock
        self.timers = PollTimers(clock)
        # Poll transports that closed with frames their client has not fetched yet (the
        # `close` envelope at least), and their session, by session id, kept for one
        # poll_grace.
        self._closed: dict[str, tuple[PollTransport, Session]] = {}
        # The poll transports open now (the memory budget counts their queues).
        self._open: set[PollTransport] = set()
        #: `_transport_closed`, bound once (a closure per transport was 208 bytes a client).
        self._on_close: Callable[[PollTransport, int, str], None] = self._transport_closed

    def close_all(self, code: int, reason: str) -> None:
        """Close every poll transport (a server shutting down: 1001): a held poll is
        answered at once with its `close` envelope, and so is the next poll of the others."""
        for transport in list(self._open):
            transport.close(code, reason)

    def open(
        self,
        request: Request,
        endpoint: Endpoint,
        kind: str,
        hello: str,
        cors: list[tuple[str, str]],
    ) -> asyncio.Future[Response]:
        """`POST E/<kind>` (or `GET E/<kind>?hello=…`): a new poll transport whose handler
        takes `hello`; answered once the welcome (or the refusal) is queued."""
        transport = self._new_transport(request, endpoint, kind)
        assert transport.receiver is not None
        transport.receiver.receive(hello)
        return self.answer(transport, cors, self.config.longpoll_timeout)

    def find(
        self,
        session_id: str,
        secret: str | None,
        endpoint: str,
        kind: str,
        cursor: str | None,
    ) -> tuple[PollTransport, float]:
        """A poll of a session of this node at `endpoint`, showing the session's resume
        `secret`, from a client here or forwarded: acknowledge what `cursor` says arrived
        (frames); the transport to take from, and how long to
        wait for something (longpoll_timeout on `longpoll`).

        Raises:
            Gone: unknown or expired session, or one opened at another endpoint.
            Forbidden: the resume secret is missing or wrong (nothing is taken).
            NotConnected: the session is not polling on `kind`.
            BadRequest: a malformed cursor (`parsing.decimal`).
        """
        closed = self._closed.get(session_id)
        if closed is not None and closed[1].transport is not None and not closed[1].closed:
            # Resumed on a new connection since: the old one's close is no news to it.
            del self._closed[session_id]
            closed = None
        if closed is not None:
            ended, owner = closed
            self.sessions.check(owner, session_id, secret, endpoint)
            del self._closed[session_id]
            return ended, 0.0
        _, transport = self.sessions.find(session_id, secret, endpoint)
        if not isinstance(transport, PollTransport) or transport.name != kind:
            raise NotConnected(f"session is not on the {kind} transport: send hello again")
        if cursor is not None:
            transport.acknowledge(decimal(cursor, "cursor"))
        return transport, self.config.longpoll_timeout if kind == "longpoll" else 0.0

    def answer(
        self, transport: PollTransport, cors: list[tuple[str, str]], timeout: float
    ) -> asyncio.Future[Response]:
        """The poll's answer, once `transport` has frames (or `timeout` passed). Held (at
        least until the next loop turn): a future the door answers from when it is
        resolved, with no task per poll."""
        held: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._hold(transport, timeout, functools.partial(_answered, held, cors))
        return held

    def take(self, transport: PollTransport, timeout: float) -> asyncio.Future[PollBatch]:
        """What a poll forwarded by another node gets (see `answer`)."""
        held: asyncio.Future[PollBatch] = asyncio.get_running_loop().create_future()
        self._hold(transport, timeout, functools.partial(_resolve_batch, held))
        return held

    async def poll_session(
        self,
        session_id: str,
        secret: str | None,
        endpoint: str,
        kind: str,
        cursor: str | None,
    ) -> PollBatch:
        """A poll forwarded by another node for a session of this one (see `find`)."""
        transport, timeout = self.find(session_id, secret, endpoint, kind, cursor)
        return await self.take(transport, timeout)

    def _hold(
        self, transport: PollTransport, timeout: float, done: Callable[[PollBatch], None]
    ) -> None:
        transport.disarm()
        transport.hold(timeout, functools.partial(self._release, transport, done))

    def _release(self, transport: PollTransport, done: Callable[[PollBatch], None]) -> None:
        if transport.close_code is None:
            transport.arm(self.config.poll_grace)
        done(transport.take())

    def _new_transport(self, request: Request, endpoint: Endpoint, kind: str) -> PollTransport:
        client = client_info(request, split_transport(request.path)[0])
        transport = PollTransport(
            kind,
            max_frames=self.config.max_poll_frames,
            max_bytes=self.config.max_write_buffer,
            on_close=self._on_close,
            timers=self.timers,
        )
        transport.receiver = EnvelopeHandler(self.hub, endpoint, transport, client)
        self._open.add(transport)
        return transport

    def _transport_closed(self, transport: PollTransport, code: int, reason: str) -> None:
        self._open.discard(transport)
        handler = transport.receiver
        if handler is None:
            return
        transport.receiver = None
        # A transport superseded by a resumption (4004) keeps nothing for later polls: the
        # new connection resumed with its own acknowledgements and positions.
        session = handler.session if isinstance(handler, EnvelopeHandler) else None
        if session is not None and code != 4004:
            self._closed[session.id] = (transport, session)
            self.clock.call_later(self.config.poll_grace, self._closed.pop, session.id, None)
        handler.closed(code, reason, by_client=False)

    def consumers(self) -> Iterator[PollTransport]:
        """Every poll queue held: the open transports', and the closed ones' that their
        clients have not fetched yet (the memory budget)."""
        yield from self._open
        for transport, _session in self._closed.values():
            yield transport


def _answered(
    held: asyncio.Future[Response], cors: list[tuple[str, str]], batch: PollBatch
) -> None:
    if not held.done():
        held.set_result(PollResponse(batch, cors))


def _resolve_batch(held: asyncio.Future[PollBatch], batch: PollBatch) -> None:
    if not held.done():
        held.set_result(batch)
