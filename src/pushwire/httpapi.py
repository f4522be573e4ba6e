"""The HTTP API: publish, send, presence, history and disconnect from any backend.

| request | |
|---|---|
| `POST /api/publish/<channel>` | publish the body; answers the message's position |
| `POST /api/send/<user>` | send the body to every session of the user, on every node |
| `GET /api/presence/<channel>` | the channel's members on every node: count and entries |
| `GET /api/history/<channel>[?since=EPOCH:OFFSET]` | the channel's kept messages (after `since`) |
| `POST /api/disconnect/<user>` | close the user's sessions (one process only: see below) |
| `GET /api/stats` | counters: connections, sessions, messages |

Its Python client is `pushwire.api` (sync and async, with retries).

A body is text (UTF-8), or binary when sent as `application/octet-stream`. In answers
(history), text data is `"data"` and binary data `"data64"` (base64), as in `pushwire.v1`.

A publish may carry `Idempotency-Key: <key>` (1 to 100 characters of `A-Z a-z 0-9 _ . : -`;
else 400): the same key to the same channel within `idempotency_ttl` answers the first
publish's position and publishes nothing, on any node. A publisher retrying after a 503 or a
lost answer sends the same key, and its message is published once. The key is never logged.

`disconnect` closes the user's sessions in this process (close 4101, not resumable) and
answers how many. With a broker that spans processes (Redis) it would reach only the node
that answers, so it answers 501 there rather than do part of the job.

The admin page's stats channel (`pushwire.auth.admin`) is refused (403) to every call:
publish, presence and history.

Once authentication is configured (or an API key is), every call needs the API key:
`Authorization: Bearer <key>` (compared in constant time). A server with authentication
and no key refuses every call: the API publishes as the server, to any channel. In an open
server (no key), calls from one address are bounded by `api_requests_per_ip` (429 with
Retry-After over it).
"""

from __future__ import annotations

import base64
import hmac

import orjson

from .auth.admin import STATS_CHANNEL
from .config import Config
from .core import Hub
from .errors import (
    BadRequest,
    Forbidden,
    MessageTooLarge,
    MethodNotAllowed,
    NotFound,
    NotSupported,
    RateLimited,
    Unauthorized,
)
from .message import Data, Position, check_idempotency_key
from .origin import OriginPolicy
from .ratelimit import AddressBuckets, address_key
from .web import Request, Response

__all__ = ["HttpApi"]


class HttpApi:
    """`POST /api/publish/<channel>` and `POST /api/send/<user>` (see the module docstring)."""

    def __init__(self, hub: Hub, config: Config, policy: OriginPolicy) -> None:
        self.hub = hub
        self.config = config
        self.policy = policy
        rate = config.api_requests_per_ip
        #: Calls per address of an open server (None: unbounded).
        self._calls = AddressBuckets(rate, max(1, config.api_burst)) if rate > 0 else None

    async def handle(self, request: Request) -> Response:
        """Answer a request under `/api/` other than `/api/stats`.

        Raises:
            MethodNotAllowed: a method the call does not take.
            NotFound: no such call.
            Unauthorized, Forbidden: no API key, a wrong one, or the Origin is not allowed.
            BadRequest, MessageTooLarge: the body is not a message, or a bad `since`.
            NotSupported: `disconnect` with a broker that spans processes.
            Unavailable: the broker cannot take it now.
        """
        path = request.path
        for prefix, method, call in (
            ("/api/publish/", "POST", self._publish),
            ("/api/send/", "POST", self._send),
            ("/api/presence/", "GET", self._presence),
            ("/api/history/", "GET", self._history),
            ("/api/disconnect/", "POST", self._disconnect),
        ):
            if path.startswith(prefix):
                if request.method != method:
                    raise MethodNotAllowed(
                        f"{path} takes {method}, not {request.method}", f"{method}, OPTIONS"
                    )
                self.authorize(request)
                return await call(request, path[len(prefix) :])
        raise NotFound(f"no such path {path}")

    def stats(self, request: Request, counters: dict[str, int]) -> Response:
        """`GET /api/stats` (the API key, when one is needed)."""
        self.authorize(request)
        return Response(200, orjson.dumps(counters), content_type="application/json")

    def authorize(self, request: Request) -> None:
        """Check the API key, where one is needed (see the module docstring).

        Raises:
            Unauthorized: no key, or a wrong one.
            Forbidden: the API is off (authentication without an API key).
        """
        key = self.config.api_key
        if key is None and not self.hub.access.authenticating:
            self._limit(request)  # an open server: anyone may call, at a bounded rate
            return
        try:
            if key is None:
                raise Forbidden("the HTTP API is off: the server has no API key")
            given = _bearer(request)
            if given is None or not hmac.compare_digest(given.encode(), key.encode()):
                raise Unauthorized("missing or wrong API key (Authorization: Bearer <key>)")
        except (Forbidden, Unauthorized) as exc:
            self.hub.access.refusals.refused(f"the API ({request.path})", exc, request.remote)
            raise

    def _limit(self, request: Request) -> None:
        """One call of an open server's API from the request's address.

        Raises:
            RateLimited: over `api_requests_per_ip`.
        """
        calls, address = self._calls, request.address
        if calls is None or address is None or self.hub.admission.exempt(address):
            return
        wait = calls.take(
            address_key(address, self.config.per_ip_ipv6_prefix), self.hub.clock.time()
        )
        if wait > 0:
            rate = self.config.api_requests_per_ip
            raise RateLimited(f"too many API calls from one address (> {rate:g}/s)", wait)

    def _body(self, request: Request) -> Data:
        """The body as text or, for application/octet-stream, binary; bounded by
        `max_message`."""
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        data: Data
        if content_type == "application/octet-stream":
            data = request.body
        else:
            try:
                data = request.body.decode()
            except UnicodeDecodeError as exc:
                raise BadRequest(
                    f"body is not valid UTF-8 at byte {exc.start}; "
                    "send binary as application/octet-stream"
                ) from None
        if len(data) > self.config.max_message:
            raise MessageTooLarge(
                f"message over size limit ({len(data)} > {self.config.max_message} bytes)"
            )
        return data

    async def _send(self, request: Request, user: str) -> Response:
        """A direct message to every session of `user` on every node. The answer says how
        many nodes received it and, with the in-memory broker (one process), how many
        sessions."""
        if not user:
            raise BadRequest("missing user id")
        cors = self._cors(request)
        data = self._body(request)
        sessions = self.hub.direct_messages.sessions_here(user)
        sent = await self.hub.send_everywhere(user, data)
        message = sent.message
        answer: dict[str, object] = {
            "user": user,
            "epoch": message.epoch,
            "offset": message.offset,
            "nodes": sent.receivers,
        }
        if not self.hub.spans_nodes:
            answer["sessions"] = sessions
        return Response(200, orjson.dumps(answer), content_type="application/json", headers=cors)

    async def _publish(self, request: Request, channel: str) -> Response:
        self.hub.access.check_channel(channel)
        self.hub.access.check_publish(None, channel)  # the server: any configured namespace
        cors = self._cors(request)
        key = check_idempotency_key(request.header("idempotency-key"))
        data = self._body(request)
        message = await self.hub.publish(channel, data, idempotency_key=key)
        answer = {"channel": message.channel, "epoch": message.epoch, "offset": message.offset}
        return Response(200, orjson.dumps(answer), content_type="application/json", headers=cors)

    async def _presence(self, request: Request, channel: str) -> Response:
        self._readable(request, channel)
        snapshot = await self.hub.presence(channel)
        answer = {
            "channel": snapshot.channel,
            "count": snapshot.count,
            "members": orjson.Fragment(b"[" + b",".join(snapshot.entries) + b"]"),
            "truncated": snapshot.count > len(snapshot.entries),
        }
        return self._json(request, answer)

    async def _history(self, request: Request, channel: str) -> Response:
        """The messages history keeps (bounded by `history_size` and `history_ttl`), after
        `since` when given; `complete` says whether history reaches back to it."""
        self._readable(request, channel)
        since = _position(request.query_param("since"))
        if since is None:
            last = await self.hub.broker.position(channel)
            since = Position(last.epoch, 0)
        history = await self.hub.broker.history(channel, since)
        answer = {
            "channel": channel,
            "epoch": history.position.epoch,
            "offset": history.position.offset,
            "complete": history.complete,
            "messages": [
                {"epoch": message.epoch, "offset": message.offset, **_data_field(message.data)}
                for message in history.messages
            ],
        }
        return self._json(request, answer)

    async def _disconnect(self, request: Request, user: str) -> Response:
        if not user:
            raise BadRequest("missing user id")
        if self.hub.spans_nodes:
            raise NotSupported(
                "disconnect reaches one process only, and this broker spans several: "
                "not available with --broker redis:// yet"
            )
        closed = self.hub.disconnect(user, "disconnected by the server")
        return self._json(request, {"user": user, "sessions": closed})

    def _readable(self, request: Request, channel: str) -> None:
        """Check that the API may read `channel`: any valid name but the admin page's stats
        channel (admin sessions alone read it, through a subscription).

        Raises:
            BadRequest: an invalid channel name.
            Forbidden: the stats channel.
        """
        self.hub.access.check_channel(channel)
        if channel == STATS_CHANNEL:
            exc = Forbidden(f"{channel!r} is the admin page's: only admin sessions read it")
            self.hub.access.refusals.refused(f"the API ({request.path})", exc, request.remote)
            raise exc

    def _json(self, request: Request, answer: dict[str, object]) -> Response:
        return Response(
            200, orjson.dumps(answer), content_type="application/json", headers=self._cors(request)
        )

    def _cors(self, request: Request) -> list[tuple[str, str]]:
        return self.policy.cors_headers(request.header("origin"), request.header("host"))


def _position(value: str | None) -> Position | None:
    """`EPOCH:OFFSET` (a position an answer gave), or None when not given.

    Raises:
        BadRequest: anything else.
    """
    if value is None:
        return None
    epoch, _, offset = value.rpartition(":")
    if not epoch or not offset.isdigit() or len(offset) > 18:
        raise BadRequest("since must be EPOCH:OFFSET, as a publish answer gives them")
    return Position(epoch, int(offset))


def _data_field(data: Data) -> dict[str, str]:
    if isinstance(data, str):
        return {"data": data}
    return {"data64": base64.b64encode(data).decode("ascii")}


def _bearer(request: Request) -> str | None:
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, credential = value.partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None
