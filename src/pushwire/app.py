"""The built-in app: the routes of the demo server around one `Hub`.

It is the app interface (`pushwire.web.Application`) that every front door calls: the native
server (`pushwire.server`) and any other door hand it requests, upgrades and TCP clients.

| path | |
|---|---|
| `/`, `/pushwire.js`, `/pushwire.mjs`, `/static/<file>` | the chat page and the browser client |
| `/lab` | the transport lab: measured figures per transport (`/static/lab.json`) |
| `/admin`, `/admin/...` | the admin page (`pushwire.admin`; off unless `Config.admin`) |
| `/echo` | echo service, any Origin (WebSocket, and every HTTP transport under it) |
| `/ws/<channel>` | publish what is sent, receive what is published |
| `/pushwire` | the general pushwire.v1 endpoint |
| `E/stream`, `E/sse`, `E/iframe`, `E/longpoll`, `E/polling`, `E/send` | E over HTTP |
| `/sse/<channel>` | a plain EventSource joins a channel |
| `/api/publish/<channel>`, `/api/send/<user>`, ... | the HTTP API (`pushwire.httpapi`) |
| `GET /api/stats` | counters: connections, sessions, messages |
| `GET /metrics` | Prometheus metrics (`pushwire.metrics`), behind the API key like `/api/*` |
| `/healthz` | liveness: 200 while serving, 503 while shutting down |
| `/readyz` | readiness: 200 while serving and the broker works, else 503 |
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import mimetypes
import sys
from collections.abc import Awaitable
from typing import Final

from .admin import AdminPage, StatsPublisher
from .broker.base import BrokerHealth
from .broker.memory import MemoryBroker
from .config import Config
from .core import Hub
from .core.budget import MemoryBudget, machine_budget
from .core.transport import Receiver, Transport
from .endpoint import ClientInfo, Endpoint, EnvelopeHandler, RawHandler
from .envelope import SUBPROTOCOL
from .errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    MisdirectedRequest,
    NotFound,
    PushwireError,
    RemoteError,
    Unavailable,
    backoff_seconds,
)
from .httpapi import HttpApi
from .metrics import CONTENT_TYPE, Metrics
from .origin import OriginPolicy
from .routing import Router
from .transports.http_session import (
    POST_OPENED,
    HttpSessions,
    envelope_stream,
    error_body,
    request_hello,
    session_claim,
    split_transport,
)
from .transports.iframe import iframe_stream
from .transports.poll import PollBatch, PollResponse, Polls
from .transports.sse import SSE_STREAM, raw_sse_stream
from .transports.stream import NDJSON_STREAM
from .transports.tcp import policy_file
from .transports.websocket.handshake import check_handshake, read_handshake
from .web import Answer, Request, Response, ServerState, WebSocketAccept

#: The HTTP transports whose request opens a session by itself (a poll opens one with a hello).
OPENING: Final = frozenset({"stream", "sse", "iframe"})

__all__ = ["App"]

_STATIC_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Request headers a cross-origin client of the HTTP transports may send (CORS preflight).
_TRANSPORT_HEADERS: Final = "Content-Type, Pushwire-Session"
_PAGES: Final = {
    "/": "index.html",
    "/pushwire.js": "pushwire.js",
    "/pushwire.mjs": "pushwire.mjs",
    "/lab": "lab.html",
}


#: Where the chat page says that the server is an open demo (`--insecure`).
_OPEN_DEMO_MARK: Final = b"<!-- pushwire: open demo notice -->"
_OPEN_DEMO_NOTICE: Final = (
    b'<div class="banner" role="note" data-testid="open-demo">Open demo: this server checks'
    b" nobody. Anyone may take any name and read every room.</div>"
)


def _load_static(*, open_demo: bool) -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    root = importlib.resources.files("pushwire") / "static"
    for entry in root.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            kind = _STATIC_TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
            files[entry.name] = (entry.read_bytes(), kind or "application/octet-stream")
    if open_demo and "index.html" in files:
        body, kind = files["index.html"]
        files["index.html"] = (body.replace(_OPEN_DEMO_MARK, _OPEN_DEMO_NOTICE), kind)
    return files


#: WebSocket paths an app keeps checked (`App._ws_paths`): as many as `_channel_endpoint`.
_WS_PATHS: Final = 4096
#: The endpoints each connection's handler keeps, shared: frozen, one per path.
_ECHO: Final = Endpoint("echo", any_origin=True)
_GENERAL: Final = Endpoint("general")


@functools.lru_cache(maxsize=4096)
def _channel_endpoint(channel: str) -> Endpoint:
    """The endpoint of `/ws/<channel>`, shared by the channel's subscribers while it is among
    the 4,096 last asked for. Interned: each subscriber's session keeps the name
    (pushwire.core.channels interns too)."""
    return Endpoint("channel", channel=sys.intern(channel))


def _handler(
    kind: type[RawHandler | EnvelopeHandler],
    hub: Hub,
    endpoint: Endpoint,
    client: ClientInfo,
    transport: Transport,
) -> Receiver:
    """A WebSocket client's handler, once its transport is made (`App.websocket`)."""
    return kind(hub, endpoint, transport, client)


class App:
    """Routes HTTP requests, WebSocket upgrades and TCP clients to the hub."""

    def __init__(
        self, hub: Hub | None = None, config: Config | None = None, *, insecure: bool = False
    ) -> None:
        self.config = config or (hub.config if hub is not None else Config())
        self.hub = hub or Hub(config=self.config)
        self.policy = OriginPolicy.from_config(self.config)
        self.subprotocols = (SUBPROTOCOL, *self.config.subprotocols)
        #: WebSocket endpoints by path, found and checked once (`websocket`; at most
        #: `_WS_PATHS`, then started again).
        self._ws_paths: dict[str, Endpoint] = {}
        self.static = _load_static(open_demo=insecure)
        self.shutting_down = False
        self.sessions = HttpSessions(self.hub)
        self.polls = Polls(self.hub, self.config, self.sessions, self.hub.clock)
        self.api = HttpApi(self.hub, self.config, self.policy)
        self.budget = self._budget()
        #: The door serving this app (its counters), once one does.
        self.server: ServerState | None = None
        #: Session routing between nodes (a Redis broker); started and closed with the broker.
        self.router: Router | None = None
        self._metrics: Metrics | None = None
        self.admin = AdminPage(self.hub, self.config)
        #: The admin page's figures (published while a door serves this app, when it is on).
        self.admin_stats = StatsPublisher(self.hub, self.config, self.stats)

    # -- the app interface ------------------------------------------------------------------

    def attach_server(self, state: ServerState) -> None:
        self.server = state
        self.budget.add_consumers("connections", state.consumers)
        self.budget.start()
        if self.config.admin:
            self.admin_stats.start()

    def stopping(self) -> None:
        self.shutting_down = True
        # A held long-poll is answered now, with its `close` envelope: waiting for it would
        # hold the shutdown up to longpoll_timeout (then the door's shutdown_timeout).
        self.polls.close_all(1001, "server shutting down")
        self.budget.stop()
        self.admin_stats.stop()

    def _budget(self) -> MemoryBudget:
        """The memory budget over what this app buffers (the door's connections are added
        once a door serves it)."""
        config, hub = self.config, self.hub
        budget = MemoryBudget(
            machine_budget(config.memory_budget), config.memory_budget_interval, hub.clock
        )
        budget.add_consumers("poll_queues", self.polls.consumers)
        broker = hub.broker
        if isinstance(broker, MemoryBroker):
            budget.add_part("history", lambda: broker.history_held, broker.trim_history)
            budget.add_part("inboxes", lambda: broker.inboxes.held)
        return budget

    def flash_policy(self, port: int) -> bytes:
        return policy_file(self.policy, port)

    def tcp_receiver(self, transport: Transport, remote: str | None) -> Receiver:
        address = remote.rpartition(":")[0] if remote is not None else None
        client = ClientInfo("tcp", [], {}, remote, address=address)
        return EnvelopeHandler(self.hub, Endpoint("general"), transport, client)

    def stats(self) -> dict[str, int]:
        """Counters for operators (and tests): connections, sessions, messages, and the
        memory budget (its bound, what was held at its last count, in total and per part)."""
        server, hub = self.server, self.hub
        counters = {
            "connections_accepted": server.accepted if server is not None else 0,
            "connections_open": server.open_connections if server is not None else 0,
            "sessions": len(hub.sessions),
            "published": hub.stats.published,
            "frames_encoded": hub.stats.frames_encoded,
            "deliveries": hub.stats.deliveries,
        }
        counters.update(self.budget.stats())
        broker = hub.broker
        if isinstance(broker, MemoryBroker):
            counters["history_trimmed"] = broker.history_trimmed
        return counters

    def readiness(self) -> Response:
        """`/readyz`: 200 while this process can serve clients fully, 503 (with the reason)
        while it shuts down or its broker is unreachable (publishing would answer 503)."""
        if self.shutting_down:
            raise Unavailable("shutting down")
        broker = self.hub.broker
        if isinstance(broker, BrokerHealth) and not broker.health_stats()["up"]:
            raise Unavailable("broker unavailable")
        return Response(200, "ready\n")

    def metrics(self, request: Request) -> Response:
        """`GET /metrics`: Prometheus' text format; the API key when one is needed (as
        `/api/stats`: they tell about the server's clients)."""
        self.api.authorize(request)
        if self._metrics is None:
            self._metrics = Metrics(self.hub, self.stats)
        return Response(200, self._metrics.exposition(), content_type=CONTENT_TYPE)

    def error_response(self, request: Request, exc: PushwireError) -> Response:
        """The answer to a failed request: status, a one-line reason, CORS when allowed."""
        status = exc.http_status
        headers: list[tuple[str, str]] = []
        if status == 426:
            headers.append(("Sec-WebSocket-Version", "13"))
        elif isinstance(exc, MethodNotAllowed):
            headers.append(("Allow", exc.allow))
        elif (wait := backoff_seconds(exc)) is not None:
            headers.append(("Retry-After", str(wait)))
        if not isinstance(exc, MisdirectedRequest):  # a Host not served: no word on origins
            with contextlib.suppress(Forbidden):  # a refused origin gets no CORS headers
                headers += self.cors(request, self._endpoint(split_transport(request.path)[0]))
        if isinstance(exc, RemoteError | Unavailable) and split_transport(request.path)[1]:
            return Response(
                status, error_body(exc), content_type="application/json", headers=headers
            )
        # The peer's own errors and "unavailable" say what happened; anything else is ours,
        # and its details stay in the log.
        message = str(exc) if isinstance(exc, RemoteError | Unavailable) else "internal error"
        return Response(status, message + "\n", headers=headers)

    def handle_http(self, request: Request) -> Answer:
        self.policy.check_host(request.header("host"))  # before routing: DNS rebinding
        path, method = request.path, request.method
        if path.startswith("/sse/"):
            raw = Endpoint("channel", channel=self.hub.access.check_channel(path[len("/sse/") :]))
            self.admit(request, "")  # a raw session: always a new one
            return raw_sse_stream(self.hub, request, raw, self.cors(request, raw))
        base, kind = split_transport(path)
        if kind is not None:
            found = self._endpoint(base)
            if found is None:
                raise NotFound(f"no such path {path}")
            if found.channel is not None:
                self.hub.access.check_channel(found.channel)
            if method == "OPTIONS":
                return self.preflight(request, found)
            if self.shutting_down:
                raise Unavailable("shutting down")
            return self._transport_request(request, found, kind)
        if path.startswith("/api/"):
            if method == "OPTIONS":
                return self.preflight(request, None)
            if path != "/api/stats":
                return self.api.handle(request)
        if path == "/admin" or path.startswith("/admin/"):
            return self.admin.handle(request)
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{path} takes GET, not {method}")
        if path == "/api/stats" and self.server is not None:
            return self.api.stats(request, self.stats())
        if path == "/healthz":
            if self.shutting_down:
                raise Unavailable("shutting down")
            return Response(200, "ok\n")
        if path == "/readyz":
            return self.readiness()
        if path == "/metrics":
            return self.metrics(request)
        name = _PAGES.get(path)
        if name is None and path.startswith("/static/"):
            name = path[len("/static/") :]
        if name is not None and name in self.static:
            body, content_type = self.static[name]
            return Response(
                200, body, content_type=content_type, headers=[("Cache-Control", "no-cache")]
            )
        endpoint = self._endpoint(path)
        if endpoint is not None:
            if request.header("upgrade") is not None:
                # An upgrade llhttp did not take as one (say, no "Connection: Upgrade"):
                # the handshake check names what is wrong.
                check_handshake(
                    request,
                    policy=self.policy,
                    subprotocols=self.subprotocols,
                    any_origin=endpoint.any_origin,
                )
            raise BadRequest(f"{path} is a WebSocket endpoint: send an Upgrade request")
        raise NotFound(f"no such path {path}")

    def websocket(self, request: Request) -> WebSocketAccept:
        """Accept a WebSocket upgrade: the subprotocol, the framing, the message handler.

        Raises the `RemoteError` whose status the client gets (400, 403, 404, 421, 426, 503).
        """
        self.policy.check_host(request.header("host"))  # before routing: DNS rebinding
        endpoint = self._ws_paths.get(request.path) or self._ws_endpoint(request.path)
        if self.shutting_down:
            raise Unavailable("shutting down")
        subprotocol, key = read_handshake(
            request,
            policy=self.policy,
            subprotocols=self.subprotocols,
            any_origin=endpoint.any_origin,
        )
        self.hub.admission.handshake(request.address)  # (`admit`: its hello comes later)
        client = ClientInfo(  # (positional: a frozen dataclass takes keywords slower)
            request.path,
            request.headers,
            request.query_params(),
            request.remote,
            request.address,
            True,  # handshaken: counted just above
        )
        envelope = subprotocol == SUBPROTOCOL
        handler = EnvelopeHandler if envelope else RawHandler
        # (a partial: one object, where a closure over four names was five)
        make_receiver = functools.partial(_handler, handler, self.hub, endpoint, client)
        return WebSocketAccept(subprotocol, envelope, make_receiver, key)

    def _ws_endpoint(self, path: str) -> Endpoint:
        """The WebSocket endpoint at `path`, checked (then kept: `websocket`).

        Raises:
            NotFound: no endpoint there (404).
            Forbidden: WebSocket is off (403).
            BadRequest: not a valid channel name (400).
        """
        endpoint = self._endpoint(path)
        if endpoint is None:
            raise NotFound(f"no WebSocket endpoint at {path}")
        if not self.config.websocket:
            raise Forbidden("WebSocket is disabled on this server: use an HTTP transport")
        if endpoint.channel is not None:
            self.hub.access.check_channel(endpoint.channel)
        paths = self._ws_paths
        if len(paths) >= _WS_PATHS:
            paths.clear()
        paths[path] = endpoint
        return endpoint

    def admit(self, request: Request, hello: str | None) -> None:
        """A request that opens a session (a WebSocket upgrade, a stream, a polling hello):
        one handshake of its address; and, when its `hello` opens a new session (it names
        none), room for one more. A resumption is not counted here: its session counts
        already (and the endpoint checks what the hello really says).

        Raises:
            RateLimited: over `handshakes_per_ip` (429 with Retry-After).
            TooManySessions: `max_sessions` or `max_sessions_per_ip` reached (503).
        """
        admission = self.hub.admission
        admission.handshake(request.address)
        if hello is not None and '"session"' not in hello:
            admission.admit(request.address)

    # -- CORS ---------------------------------------------------------------------------------

    def cors(self, request: Request, endpoint: Endpoint | None) -> list[tuple[str, str]]:
        """CORS headers for an allowed Origin (none without Origin). Raises `Forbidden`."""
        origin = request.header("origin")
        if origin is None:
            return []  # not a browser's cross-origin request: the common case, made cheap
        any_origin = endpoint is not None and endpoint.any_origin
        return self.policy.cors_headers(origin, request.header("host"), any_origin=any_origin)

    def preflight(self, request: Request, endpoint: Endpoint | None) -> Response:
        """Answer a CORS preflight (OPTIONS)."""
        if endpoint is not None:
            allowed = _TRANSPORT_HEADERS  # the session header of polls and sends, no more
        else:
            allowed = request.header("access-control-request-headers") or "Content-Type"
        headers = [
            *self.cors(request, endpoint),
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", allowed),
            ("Access-Control-Max-Age", "600"),
        ]
        return Response(204, content_type=None, headers=headers)

    # -- the HTTP transports ------------------------------------------------------------------

    def _endpoint(self, path: str) -> Endpoint | None:
        if path == "/echo":
            return _ECHO
        if path == "/pushwire":
            return _GENERAL
        if path.startswith("/ws/"):
            return _channel_endpoint(path[len("/ws/") :])
        return None

    def _transport_request(self, request: Request, endpoint: Endpoint, kind: str) -> Answer:
        cors = self.cors(request, endpoint)
        hub = self.hub
        if kind == "send":
            if request.method != "POST":
                message = f"{request.path} takes POST, not {request.method}"
                raise MethodNotAllowed(message, "POST, OPTIONS")
            return self._send(request, endpoint, cors)
        if request.method not in ("GET", "HEAD") and (
            request.method != "POST" or kind not in POST_OPENED
        ):
            if kind in POST_OPENED:
                message = f"{request.path} takes GET or POST, not {request.method}"
                raise MethodNotAllowed(message, "GET, HEAD, POST, OPTIONS")
            raise MethodNotAllowed(f"{request.path} takes GET, not {request.method}")
        if kind in OPENING:
            try:
                hello = request_hello(request)
            except BadRequest:
                hello = None  # the transport says what is wrong, after the handshake's count
            self.admit(request, hello)
        if kind == "stream":
            return envelope_stream(hub, request, endpoint, cors, NDJSON_STREAM)
        if kind == "sse":
            return envelope_stream(hub, request, endpoint, cors, SSE_STREAM)
        if kind == "iframe":
            max_bytes = self.config.iframe_max_bytes
            return iframe_stream(
                hub, request, endpoint, cors, policy=self.policy, max_bytes=max_bytes
            )
        return self._poll(request, endpoint, kind, cors)

    def _poll(
        self, request: Request, endpoint: Endpoint, kind: str, cors: list[tuple[str, str]]
    ) -> Answer:
        hello = request_hello(request)
        if hello is not None:
            self.admit(request, hello)
            return self.polls.open(request, endpoint, kind, hello, cors)
        session_id, secret = session_claim(request)
        cursor = request.query_param("cursor")
        router = self.router
        if router is not None and (home := router.home_of(session_id)) is not None:
            batch = router.poll(home, session_id, secret, endpoint.key, kind, cursor)
            return self._forwarded_poll(batch, cors)
        transport, timeout = self.polls.find(session_id, secret, endpoint.key, kind, cursor)
        return self.polls.answer(transport, cors, timeout)

    @staticmethod
    async def _forwarded_poll(batch: Awaitable[PollBatch], cors: list[tuple[str, str]]) -> Response:
        return PollResponse(await batch, cors)

    def _send(self, request: Request, endpoint: Endpoint, cors: list[tuple[str, str]]) -> Answer:
        session_id, secret = session_claim(request)
        router = self.router
        if router is not None and (home := router.home_of(session_id)) is not None:
            sent = router.send(home, session_id, secret, endpoint.key, request.body)
            return self._forwarded_send(sent, cors)
        self.sessions.send(session_id, secret, endpoint.key, request.body)
        return Response(204, content_type=None, headers=cors)

    @staticmethod
    async def _forwarded_send(sent: Awaitable[None], cors: list[tuple[str, str]]) -> Response:
        await sent
        return Response(204, content_type=None, headers=cors)
