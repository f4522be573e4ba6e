"""The built-in app: routes of the demo server around one `Hub`.

| path | |
|---|---|
| `/`, `/pushwire.js`, `/static/<file>` | the chat page and the browser client |
| `/lab` | the transport lab: measured figures per transport (`/static/lab.json`) |
| `/echo` | echo service, any Origin (WebSocket) |
| `/ws/<channel>` | publish what is sent, receive what is published (WebSocket) |
| `/pushwire` | general envelope endpoint (WebSocket) |
| `POST /api/publish/<channel>` | publish the body |
| `POST /api/send/<user>` | send the body to every session of a user |
| `/healthz` | 200 while serving, 503 while shutting down |
"""

from __future__ import annotations

import contextlib
import importlib.resources
import mimetypes
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson

from .config import Config
from .core import Hub
from .endpoint import ClientInfo, Endpoint, EnvelopeHandler, RawHandler
from .envelope import SUBPROTOCOL
from .errors import (
    BadRequest,
    Forbidden,
    MessageTooLarge,
    MethodNotAllowed,
    NotFound,
    PushwireError,
    RemoteError,
    Unavailable,
)
from .fallback import HttpTransports, error_body, split_transport
from .http.parser import Request
from .http.response import simple_response
from .http.server import StreamStart
from .message import Data
from .transports.base import Framing
from .transports.websocket import (
    ENVELOPE_FRAMING,
    RAW_FRAMING,
    OriginPolicy,
    accept_handshake,
)

if TYPE_CHECKING:
    from .http.server import Server
    from .routing import Router
    from .transports.base import Transport

__all__ = ["App"]

_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _load_static() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    root = importlib.resources.files("pushwire") / "static"
    for entry in root.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            kind = _STATIC_TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
            files[entry.name] = (entry.read_bytes(), kind or "application/octet-stream")
    return files


class App:
    """Routes HTTP requests and WebSocket upgrades to the hub."""

    def __init__(self, hub: Hub | None = None, config: Config | None = None) -> None:
        self.config = config or (hub.config if hub is not None else Config())
        self.hub = hub or Hub(config=self.config)
        self.policy = OriginPolicy(
            frozenset(o.lower().rstrip("/") for o in self.config.allow_origins)
        )
        self.subprotocols = (SUBPROTOCOL, *self.config.subprotocols)
        self.static = _load_static()
        self.shutting_down = False
        self.http = HttpTransports(self.hub, self.config, self.policy)
        self.server: Server | None = None  # set by the server that serves this app
        #: Session routing between nodes (a Redis broker); started and closed with the broker.
        self.router: Router | None = None

    def stats(self) -> dict[str, int]:
        """Counters for operators (and tests): connections, sessions, messages."""
        server, hub = self.server, self.hub
        return {
            "connections_accepted": server.accepted if server is not None else 0,
            "connections_open": len(server.connections) if server is not None else 0,
            "sessions": len(hub.sessions),
            "published": hub.stats.published,
            "frames_encoded": hub.stats.frames_encoded,
            "deliveries": hub.stats.deliveries,
        }

    def error_response(self, request: Request, exc: PushwireError, keep_alive: bool) -> bytes:
        """The answer to a failed request: status, a one-line reason, CORS when allowed."""
        status = exc.http_status
        headers: list[tuple[str, str]] = []
        if status == 426:
            headers.append(("Sec-WebSocket-Version", "13"))
        elif isinstance(exc, MethodNotAllowed):
            headers.append(("Allow", exc.allow))
        with contextlib.suppress(Forbidden):  # a refused origin gets no CORS headers
            headers += self.http.cors(request, self._endpoint(split_transport(request.path)[0]))
        version = "1.0" if request.version == "1.0" else "1.1"
        if isinstance(exc, RemoteError | Unavailable) and split_transport(request.path)[1]:
            return simple_response(
                status,
                error_body(exc),
                content_type="application/json",
                headers=headers,
                version=version,
                keep_alive=keep_alive,
            )
        # The peer's own errors and "unavailable" say what happened; anything else is ours,
        # and its details stay in the log.
        message = str(exc) if isinstance(exc, RemoteError | Unavailable) else "internal error"
        return simple_response(
            status, message + "\n", headers=headers, version=version, keep_alive=keep_alive
        )

    # -- HTTP -------------------------------------------------------------------------------

    def handle_http(self, request: Request) -> bytes | Awaitable[bytes] | StreamStart:
        path, method = request.path, request.method
        version = "1.0" if request.version == "1.0" else "1.1"
        keep_alive = request.keep_alive and not self.shutting_down
        if path.startswith("/sse/"):
            channel = self.hub.check_channel(path.removeprefix("/sse/"))
            return self.http.raw_sse(request, Endpoint("channel", channel=channel))
        base, kind = split_transport(path)
        if kind is not None:
            endpoint = self._endpoint(base)
            if endpoint is None:
                raise NotFound(f"no such path {path}")
            if endpoint.channel is not None:
                self.hub.check_channel(endpoint.channel)
            if method == "OPTIONS":
                return self.http.preflight(request, endpoint)
            if self.shutting_down:
                raise Unavailable("shutting down")
            return self.http.handle(request, endpoint, kind)
        if method == "OPTIONS" and path.startswith("/api/"):
            return self.http.preflight(request, None)
        if path.startswith("/api/") and path != "/api/stats":
            if method != "POST":
                raise MethodNotAllowed(f"{path} takes POST, not {method}", "POST, OPTIONS")
            if path.startswith("/api/publish/"):
                channel = path.removeprefix("/api/publish/")
                return self._publish(request, channel, version, keep_alive)
            if path.startswith("/api/send/"):
                user = path.removeprefix("/api/send/")
                return self._send(request, user, version, keep_alive)
            raise NotFound(f"no such path {path}")
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{path} takes GET, not {method}")
        head_only = method == "HEAD"
        if path == "/api/stats" and self.server is not None:
            return simple_response(
                200,
                orjson.dumps(self.stats()),
                content_type="application/json",
                version=version,
                keep_alive=keep_alive,
                head_only=head_only,
            )
        if path == "/healthz":
            if self.shutting_down:
                raise Unavailable("shutting down")
            return simple_response(
                200, "ok\n", version=version, keep_alive=keep_alive, head_only=head_only
            )
        name = {"/": "index.html", "/pushwire.js": "pushwire.js", "/lab": "lab.html"}.get(path)
        if name is None and path.startswith("/static/"):
            name = path.removeprefix("/static/")
        if name is not None and name in self.static:
            body, content_type = self.static[name]
            return simple_response(
                200,
                body,
                content_type=content_type,
                headers=[("Cache-Control", "no-cache")],
                version=version,
                keep_alive=keep_alive,
                head_only=head_only,
            )
        endpoint = self._endpoint(path)
        if endpoint is not None:
            if request.header("upgrade") is not None:
                # An upgrade llhttp did not take as one (say, no "Connection: Upgrade"):
                # the handshake check names what is wrong.
                accept_handshake(
                    request,
                    policy=self.policy,
                    subprotocols=self.subprotocols,
                    any_origin=endpoint.any_origin,
                )
            raise BadRequest(f"{path} is a WebSocket endpoint: send an Upgrade request")
        raise NotFound(f"no such path {path}")

    def _api_body(self, request: Request) -> Data:
        """The body of an API call as text or, for application/octet-stream, binary."""
        if not self.policy.allows(request.header("origin"), request.header("host")):
            raise Forbidden(f"origin {request.header('origin')!r} is not allowed")
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type == "application/octet-stream":
            return request.body
        try:
            return request.body.decode()
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"body is not valid UTF-8 at byte {exc.start}; "
                "send binary as application/octet-stream"
            ) from None

    async def _send(self, request: Request, user: str, version: str, keep_alive: bool) -> bytes:
        """A direct message to every session of `user` on every node. The answer says how
        many nodes received it and, with the in-memory broker (one process), how many
        sessions."""
        if not user:
            raise BadRequest("missing user id")
        data = self._api_body(request)
        if len(data) > self.config.max_message:
            raise MessageTooLarge(
                f"message over size limit ({len(data)} > {self.config.max_message} bytes)"
            )
        answer: dict[str, object] = {"user": user}
        if self.hub.spans_nodes:
            answer["nodes"] = await self.hub.send_everywhere(user, data)
        else:
            sessions = self.hub.send(user, data)
            answer.update(nodes=1 if sessions else 0, sessions=sessions)
        return self._api_answer(request, answer, version, keep_alive)

    async def _publish(
        self, request: Request, channel: str, version: str, keep_alive: bool
    ) -> bytes:
        self.hub.check_channel(channel)
        data = self._api_body(request)
        if len(data) > self.config.max_message:
            raise MessageTooLarge(
                f"message over size limit ({len(data)} > {self.config.max_message} bytes)"
            )
        message = await self.hub.publish(channel, data)
        answer = {"channel": message.channel, "epoch": message.epoch, "offset": message.offset}
        return self._api_answer(request, answer, version, keep_alive)

    def _api_answer(
        self, request: Request, answer: dict[str, object], version: str, keep_alive: bool
    ) -> bytes:
        """A 200 JSON answer of the API, with CORS headers for an allowed Origin."""
        return simple_response(
            200,
            orjson.dumps(answer),
            content_type="application/json",
            headers=self.http.cors(request, None),
            version=version,
            keep_alive=keep_alive,
        )

    # -- WebSocket --------------------------------------------------------------------------

    def _endpoint(self, path: str) -> Endpoint | None:
        if path == "/echo":
            return Endpoint("echo", any_origin=True)
        if path == "/pushwire":
            return Endpoint("general")
        if path.startswith("/ws/"):
            return Endpoint("channel", channel=path.removeprefix("/ws/"))
        return None

    def upgrade(
        self, request: Request, transport: Transport
    ) -> tuple[bytes, Framing, RawHandler | EnvelopeHandler]:
        """Accept a WebSocket upgrade: the 101 answer, the framing and the message handler.

        Raises the `RemoteError` whose status the client gets (400, 403, 404, 426).
        """
        endpoint = self._endpoint(request.path)
        if endpoint is None:
            raise NotFound(f"no WebSocket endpoint at {request.path}")
        if not self.config.websocket:
            raise Forbidden("WebSocket is disabled on this server: use an HTTP transport")
        if endpoint.channel is not None:
            self.hub.check_channel(endpoint.channel)
        if self.shutting_down:
            raise Unavailable("shutting down")
        handshake = accept_handshake(
            request,
            policy=self.policy,
            subprotocols=self.subprotocols,
            any_origin=endpoint.any_origin,
        )
        query = {}
        for part in request.query.split("&"):
            key, _, _value = part.partition("=")
            if key and key not in query:
                query[key] = request.query_param(key) or ""
        client = ClientInfo(
            request.path, request.headers, query, getattr(transport, "remote", None)
        )
        if handshake.subprotocol == SUBPROTOCOL:
            return (
                handshake.response,
                ENVELOPE_FRAMING,
                EnvelopeHandler(self.hub, endpoint, transport, client),
            )
        return handshake.response, RAW_FRAMING, RawHandler(self.hub, endpoint, transport, client)
