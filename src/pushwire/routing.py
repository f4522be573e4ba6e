"""Sessions without sticky load balancing: home-node routing and session hand-over.

With a Redis broker, every node has a random id, and each session's id names the node that
holds it, its home: `<node>.<22 random characters>` (still 128 unguessable bits). Any node
can therefore serve any request of any session:

- A poll or send for a session homed on another live node is **forwarded** there
  (`NodeLink`: Redis pub/sub, one channel per node). The home node runs the very code of a
  local request (`Polls.poll_session` / `HttpSessions.send`: cursor acknowledgement, the
  long-poll wait) and publishes the answer back; the receiving node writes the HTTP response
  with its own headers. No answer within `forward_timeout` (beyond `longpoll_timeout` for a
  long-poll), or the home node not reached, is 503: retry with the same cursor; the home node
  keeps frames until a later cursor acknowledges them, so a retry loses nothing. A home node
  that is dead (its liveness key expired after `node_ttl`, and nothing subscribed to its
  channel) is 410: the client resumes.
- A `hello` resuming a session homed on another node (any transport) first asks that node
  whose session it is (every request about a session shows its resume secret and the
  endpoint asked at: the home node checks both, and answers a wrong one as an unknown
  session), listens to that user's direct messages (`Hub.prepare_user`), then asks it to
  **hand the session over**: it detaches the session (its connection closes with 4004) and
  sends what resuming needs (user, info, its endpoint and resume secret, its token's grants
  and expiry); this node adopts it under a new id naming this node (the secret stays the
  client's). No direct message travels with it: they are in the user's inbox, and the
  client's hello names the last position it has there, so this node replays the rest (none
  lost, none doubled). The client, welcomed with `resumed: true` and that id, resubscribes
  from its positions as after any resumption.
  A dead or silent home node: the welcome says `expired`, exactly as without routing.

Bounds: `max_forwarded` requests in flight per node, sent and served each (503 over it);
request bodies are bounded by `max_body_bytes` where they arrived.

The memory broker has no router: one process, sessions as before.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .broker.base import Delivery, NodeLink
from .config import Config
from .core import Hub, Session, new_session_id
from .core.transport import Transport
from .errors import (
    BadRequest,
    Forbidden,
    Gone,
    NotConnected,
    PushwireError,
    RemoteError,
    Unavailable,
)
from .transports.http_session import HttpSessions
from .transports.poll import PollBatch, Polls

__all__ = ["Router", "decode_payload", "encode_payload"]

log = logging.getLogger("pushwire.routing")

_NODE: Final = re.compile(r"[0-9a-f]{12}")
#: A session id routing makes: its node, a dot, a random part (`new_session_id`).
_SESSION_ID: Final = re.compile(r"[0-9a-f]{12}\.[A-Za-z0-9_-]{1,64}")
#: Hand-overs followed for one resumption (a session that moved on and on is expired).
MAX_MOVES: Final = 4


@dataclass(frozen=True, slots=True)
class _Moved:
    """Where a session handed over from this node went, and what proves it is the client's."""

    to: str
    secret: str
    endpoint: str
    until: float


#: Errors a home node may answer, by HTTP status (anything else reads as a 500).
_ERRORS_BY_STATUS: Final[dict[int, type[PushwireError]]] = {
    400: BadRequest,
    403: Forbidden,
    409: NotConnected,
    410: Gone,
    503: Unavailable,
}


def encode_payload(header: dict[str, Any], body: bytes = b"") -> bytes:
    """A request or answer between nodes: one JSON line, then the body as is."""
    return orjson.dumps(header) + b"\n" + body


def decode_payload(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and body of `encode_payload`. Raises `ValueError` when malformed."""
    line, _, body = payload.partition(b"\n")
    header = orjson.loads(line)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header, body


class Router:
    """Routes requests of sessions homed on other nodes, and hands sessions over.

    Building it wires it into the hub (session ids, migration); the app asks it where a
    session lives (`home_of`) and forwards there (`poll`, `send`). `start` and `close` follow
    the broker's.
    """

    def __init__(
        self, hub: Hub, polls: Polls, sessions: HttpSessions, link: NodeLink, config: Config
    ) -> None:
        self.hub = hub
        self.polls = polls
        self.sessions = sessions
        self.link = link
        self.config = config
        self.node = link.node
        self._requests: dict[int, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self._ids = itertools.count(1)
        self._serving = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Sessions handed over from here: old id -> where it went, for `session_grace`, so
        # that a client whose welcome was lost comes back with the old id and finds it.
        self._moved: OrderedDict[str, _Moved] = OrderedDict()
        hub.new_session_id = self._new_session_id
        hub.migration = self

    def _new_session_id(self) -> str:
        return f"{self.node}.{new_session_id()}"

    async def start(self) -> None:
        await self.link.start(self._received)

    async def close(self) -> None:
        await self.link.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for future in self._requests.values():
            if not future.done():
                future.set_exception(Unavailable("shutting down"))

    def home_of(self, session_id: str) -> str | None:
        """The node holding `session_id` when it is another node (None: this one, or an id
        that names no node, which this node answers as unknown)."""
        node, dot, _ = session_id.partition(".")
        if not dot or node == self.node or not _NODE.fullmatch(node):
            return None
        return node

    # -- requesting -----------------------------------------------------------------------------

    async def poll(
        self,
        home: str,
        session_id: str,
        secret: str | None,
        endpoint: str,
        kind: str,
        cursor: str | None,
    ) -> PollBatch:
        """`Polls.poll_session` on the session's home node.

        Raises:
            Gone: the home node is dead (or does not know the session at `endpoint`).
            Forbidden: the home node says `secret` is not the session's.
            Unavailable: no answer in time: poll again with the same cursor.
        """
        wait = self.config.longpoll_timeout if kind == "longpoll" else 0.0
        request = _session_request("poll", session_id, secret, endpoint)
        request["kind"] = kind
        if cursor is not None:
            request["cursor"] = cursor
        answer, body = await self._request(home, request, b"", wait)
        cursor_out = answer.get("cursor")
        if not isinstance(cursor_out, int):
            raise Unavailable(f"malformed answer from node {home}")
        return PollBatch(body, cursor_out, bool(answer.get("closed")))

    async def send(
        self, home: str, session_id: str, secret: str | None, endpoint: str, body: bytes
    ) -> None:
        """`HttpSessions.send` on the session's home node (same errors as `poll`)."""
        request = _session_request("send", session_id, secret, endpoint)
        await self._request(home, request, body, 0.0)

    async def take_over(
        self, session_id: str, secret: object, endpoint: str, transport: Transport
    ) -> Session | None:
        """Ask the session's home node to hand it over; adopt it here, attached to
        `transport`. None when it is not another node's, or that node is dead, silent or
        does not have it, or `secret` is not its resume secret, or it was opened at another
        endpoint: the session then counts as expired (and stays where it is).

        A session that moved on after this id was given out (its welcome may never have
        reached the client) is followed: its old home names the new id, for the client's
        secret only, and the session is taken from there (or resumed here, if it is here)."""
        if not isinstance(secret, str):
            return None
        for hop in range(MAX_MOVES):
            home = self.home_of(session_id)
            if home is None:
                if hop:  # followed here: the session is this node's now
                    return self.hub.lifecycle.resume(session_id, secret, endpoint, transport)
                moved = self._moved_to(session_id, secret, endpoint)
                if moved is None:
                    return None
                session_id = moved
                continue
            taken = await self._take_from(home, session_id, secret, endpoint, transport)
            if not isinstance(taken, str):
                return taken
            session_id = taken
        log.info("session not handed over: moved more than %d times", MAX_MOVES)
        return None

    async def _take_from(
        self, home: str, session_id: str, secret: str, endpoint: str, transport: Transport
    ) -> Session | str | None:
        """`take_over` from `home`: the session, or the id it moved on to, or None."""
        user: str | None = None
        try:
            # First whose it is: this node listens to the user's direct messages before the
            # session opens here. Those sent meanwhile need nothing carried over: they are in
            # the user's inbox, and the client's hello names where it stands in it.
            answer, _ = await self._hand_over_step(home, "user", session_id, secret, endpoint)
            moved = answer.get("moved")
            if moved is not None:
                return self._moved_id(moved, home)
            owner = answer.get("user")
            user = owner if isinstance(owner, str) else None
            attached = answer.get("attached")
            await self.hub.direct_messages.prepare_user(user)
            if transport.receiver is None:
                # The connection this hello came on ended meanwhile: its client gave up on
                # it and may be back at the home node already; taking the session now would
                # close its live connection there (4004) for a connection nobody reads.
                raise Gone("the connection asking for the hand-over ended")
            # The id the session will have here, named before the home node lets it go: the
            # home node keeps it as a pointer, for a client whose welcome does not arrive.
            new_id = self._new_session_id()
            fields: dict[str, Any] = {"to": new_id}
            if isinstance(attached, int):
                fields["attached"] = attached
            answer, body = await self._hand_over_step(
                home, "handover", session_id, secret, endpoint, **fields
            )
            moved = answer.get("moved")
            if moved is not None:  # it moved on between the two questions
                if user is not None:
                    self.hub.direct_messages.release_user(user)
                return self._moved_id(moved, home)
            state = orjson.loads(body)
            if state["user"] != user:
                raise ValueError("the session's user changed during the hand-over")
            if state["endpoint"] != endpoint or state["secret"] != secret:
                raise ValueError("the hand-over names another endpoint or secret")
            session = self.hub.lifecycle.adopt(
                transport,
                state["user"],
                state["info"],
                endpoint=state["endpoint"],
                secret=state["secret"],
                grants=frozenset(state.get("grants", ())),
                token_expires=state.get("token_expires"),
                session_id=new_id,
            )
            return None if session.closed else session
        except (PushwireError, ValueError, KeyError, TypeError) as exc:
            # Neither the session id nor the secret goes to the log.
            log.info("session not handed over by node %s: %s", home, type(exc).__name__)
            if user is not None:
                self.hub.direct_messages.release_user(user)
            return None

    @staticmethod
    def _moved_id(moved: object, home: str) -> str:
        """A home node's answer that the session moved on: the new id (checked)."""
        if not isinstance(moved, str) or not _SESSION_ID.fullmatch(moved):
            raise ValueError(f"node {home} named no valid session id")
        return moved

    def _moved_to(self, session_id: str, secret: str, endpoint: str) -> str | None:
        """Where a session handed over from here went, for its own secret and endpoint."""
        now = self.hub.clock.time()
        moved = self._moved
        while moved:
            oldest = next(iter(moved.values()))
            if oldest.until > now:
                break
            moved.popitem(last=False)
        entry = moved.get(session_id)
        if (
            entry is None
            or entry.endpoint != endpoint
            or not hmac.compare_digest(entry.secret.encode(), secret.encode())
        ):
            return None
        return entry.to

    async def _hand_over_step(
        self, home: str, op: str, session_id: str, secret: str, endpoint: str, **fields: Any
    ) -> tuple[dict[str, Any], bytes]:
        """One request of a hand-over to the session's home node (`handover_timeout`), with
        the request's own `fields` (the hand-over's `to`)."""
        request = {**_session_request(op, session_id, secret, endpoint), **fields}
        return await self._request(home, request, b"", 0.0, timeout=self.config.handover_timeout)

    async def _request(
        self,
        home: str,
        request: dict[str, Any],
        body: bytes,
        wait: float,
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        limit = self.config.max_forwarded
        if len(self._requests) >= limit:
            raise Unavailable(f"too many requests forwarded to other nodes (> {limit}): retry")
        if timeout is None:
            timeout = wait + self.config.forward_timeout
        request_id = next(self._ids)
        request.update(id=request_id, reply=self.node)
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self._requests[request_id] = future
        try:
            delivery = await self.link.send(home, encode_payload(request, body))
            if delivery is Delivery.DEAD:
                raise Gone(f"the session's node {home} is gone: resume the session")
            if delivery is not Delivery.DELIVERED:
                raise Unavailable(f"the session's node {home} is not reachable now: retry")
            async with asyncio.timeout(timeout):
                answer, out = await future
        except TimeoutError:
            raise Unavailable(
                f"no answer from the session's node {home} within {timeout:g} s: retry"
            ) from None
        finally:
            self._requests.pop(request_id, None)
        status = answer.get("status")
        if status in (200, 204):
            return answer, out
        error = _ERRORS_BY_STATUS.get(status if isinstance(status, int) else 500, PushwireError)
        raise error(str(answer.get("message", "internal error")))

    # -- serving ------------------------------------------------------------------------------

    def _received(self, payload: bytes) -> None:
        """What another node sent to this one: an answer to a request of ours, or a request."""
        try:
            header, body = decode_payload(payload)
        except ValueError:
            # Not its bytes: a node's request may hold a session's secret.
            log.warning("malformed node message ignored (%d bytes)", len(payload))
            return
        op = header.get("op")
        if op == "answer":
            future = self._requests.get(header.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result((header, body))
            return
        reply = header.get("reply")
        if not isinstance(reply, str) or not _NODE.fullmatch(reply):
            log.warning("node request %r without a valid reply address ignored", header.get("op"))
            return
        task = asyncio.ensure_future(self._serve(header, body, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: dict[str, Any], body: bytes, reply: str) -> None:
        answer: dict[str, Any] = {"op": "answer", "id": request.get("id"), "status": 200}
        out = b""
        limit = self.config.max_forwarded
        try:
            session_id = request.get("session")
            if not isinstance(session_id, str):
                raise BadRequest("forwarded request without a session")
            if self._serving >= limit:
                raise Unavailable(f"too many forwarded requests here (> {limit}): retry")
            self._serving += 1
            try:
                out = await self._run(request, session_id, body, answer)
            finally:
                self._serving -= 1
        except (RemoteError, Unavailable) as exc:
            answer.update(status=exc.http_status, code=exc.error_code, message=str(exc))
        except Exception:
            log.exception("forwarded request %r failed", request.get("op"))
            answer.update(status=500, code="internal", message="internal error")
        try:
            await self.link.send(reply, encode_payload(answer, out))
        except Unavailable as exc:
            # The requesting node answers 503 when its timeout passes; frames stay queued.
            log.info("answer to node %s lost: %s", reply, exc)

    async def _run(
        self, request: dict[str, Any], session_id: str, body: bytes, answer: dict[str, Any]
    ) -> bytes:
        op = request.get("op")
        secret, endpoint = request.get("secret"), request.get("endpoint")
        if not (secret is None or isinstance(secret, str)) or not isinstance(endpoint, str):
            raise BadRequest("forwarded request without a valid secret or endpoint")
        if op == "poll":
            kind = request.get("kind")
            cursor = request.get("cursor")
            if kind not in ("polling", "longpoll"):
                raise BadRequest(f"invalid poll kind {kind!r}")
            if not (cursor is None or isinstance(cursor, str)):
                raise BadRequest("cursor must be a string")
            batch = await self.polls.poll_session(session_id, secret, endpoint, kind, cursor)
            answer.update(cursor=batch.cursor, closed=batch.closed)
            return batch.body
        if op == "send":
            self.sessions.send(session_id, secret, endpoint, body)
            answer["status"] = 204
            return b""
        # A hand-over: only to a node that shows the session's secret, at its endpoint.
        if op not in ("handover", "user"):
            raise BadRequest(f"unknown node request {op!r}")
        session = self.hub.lifecycle.claim(session_id, secret, endpoint)
        if session is None:
            moved = self._moved_to(session_id, secret, endpoint) if secret is not None else None
            if moved is None:
                raise Gone(f"unknown or expired session {session_id!r}")
            answer["moved"] = moved
            return b""
        if op == "handover":
            to = request.get("to")
            if (
                not isinstance(to, str)
                or not _SESSION_ID.fullmatch(to)
                or self.home_of(to) != (request.get("reply"))
            ):
                raise BadRequest("a hand-over names the id the session gets at its new node")
            attached = request.get("attached")
            if session.transport is not None and attached not in (None, session.attached):
                # Its client came back here between the two questions (the hello that asked
                # is one it gave up on): it keeps its live connection.
                raise Gone(f"session {session_id!r} was resumed here meanwhile")
            return self._hand_over(session, to)
        answer["user"] = session.user
        answer["attached"] = session.attached
        return b""

    def _hand_over(self, session: Session, to: str) -> bytes:
        """Detach a session of this node for another node to resume (as `to`); what resuming
        needs. Its old id leads to `to` for `session_grace`, with its secret, at its endpoint;
        beyond `max_moved_sessions` such pointers the oldest is forgotten first."""
        state = {
            "endpoint": session.endpoint,
            "secret": session.secret,
            "user": session.user,
            "info": dict(session.info),
            # The token's grants and expiry (wall clock: the nodes' own clocks differ).
            "grants": sorted(session.grants),
            "token_expires": session.token_expires,
        }
        try:
            body = orjson.dumps(state)
        except TypeError as exc:
            raise Gone(f"session {session.id!r} cannot move: its info is not JSON") from exc
        self.hub.lifecycle.hand_over(session)
        until = self.hub.clock.time() + self.config.session_grace
        self._moved[session.id] = _Moved(to, session.secret, session.endpoint, until)
        if len(self._moved) > self.config.max_moved_sessions:
            self._moved.popitem(last=False)
        return body


def _session_request(op: str, session_id: str, secret: str | None, endpoint: str) -> dict[str, Any]:
    """A request about a session to its home node: it shows the resume secret the client
    showed and the endpoint asked at, which the home node checks."""
    return {"op": op, "session": session_id, "secret": secret, "endpoint": endpoint}
