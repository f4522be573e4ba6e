"""pushwire's app as an ASGI 3 application: the second front door over the app interface.

An ASGI server (uvicorn, hypercorn, daphne) parses HTTP, frames WebSocket messages and
never-ending answers, and owns the sockets; this door turns its scopes into `web.Request`s,
asks the app (`web.Application`: the same routes, checks and refusals as the native server),
and moves what the app answers: a `Response`, an awaited one (a held long-poll, a publish),
a `StreamResponse` (`stream.py`) or an accepted WebSocket (`websocket.py`).

Mounted under a prefix (Starlette's `Mount`, Django's routing, uvicorn's `--root-path`), it
routes the path below the prefix (`scope.route_path`). What the native server bounds itself
(connections, header size and time, slow request bodies) is the ASGI server's to bound here;
`max_body_bytes`, `max_message` and `max_write_buffer` are this door's.

Start and stop: the ASGI lifespan when this is the server's app; `async with` (a host app's
lifespan) when it is mounted, since routers do not pass the lifespan on; else the first
request starts it. Stopping closes WebSockets with 1001, ends streams with a `close`
envelope, answers held long-polls at once, then closes the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Protocol

from ..clock import Clock
from ..config import Config
from ..core.budget import BudgetConsumer
from ..errors import BodyTooLarge, PushwireError
from ..guard import FAILURES
from ..web import Application, Request, Response, StreamResponse
from .scope import Receive, Scope, Send, read_body, scope_request
from .stream import AsgiStream, serve_stream
from .websocket import AsgiWebSocket, serve_websocket

__all__ = ["AsgiApp", "Lifecycle"]

log = logging.getLogger("pushwire.asgi")


class Lifecycle(Protocol):
    """What starts before the first request and closes after the last (the broker)."""

    async def start(self) -> None:
        """Before serving."""

    async def close(self) -> None:
        """After serving."""


class AsgiApp:
    """An ASGI 3 application serving every pushwire endpoint (see the module docstring)."""

    def __init__(
        self, app: Application, config: Config, clock: Clock, lifecycle: Lifecycle
    ) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self.lifecycle = lifecycle
        self.accepted = 0  # requests and WebSockets taken since start
        self.open_connections = 0  # those being answered now
        self._streams: set[AsgiStream] = set()
        self._websockets: set[AsgiWebSocket] = set()
        self._started: asyncio.Future[None] | None = None
        self._ready = False  # started, and not failing
        self._stopped = False
        self._idle: asyncio.Event | None = None

    def consumers(self) -> Iterator[BudgetConsumer]:
        """The open WebSockets and streams, for the memory budget (what each holds)."""
        yield from self._websockets
        yield from self._streams

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the broker (once; later calls wait for the first)."""
        if self._started is None:
            # In the loop: the app starts its memory budget's timer when a door attaches.
            self.app.attach_server(self)
            self._started = asyncio.ensure_future(self.lifecycle.start())
        await asyncio.shield(self._started)
        self._ready = True

    async def close(self) -> None:
        """Shut down: refuse new work, close every WebSocket (1001) and stream, answer held
        long-polls, wait up to `shutdown_timeout` for them, then close the broker."""
        if self._stopped:
            return
        self._stopped = True
        # What was published in this loop turn is fanned out on the next one (the channels'
        # per-turn batch): let it go out before the connections close.
        await asyncio.sleep(0)
        self.app.stopping()
        for websocket in list(self._websockets):
            websocket.shutdown()
        for stream in list(self._streams):
            stream.shutdown()
        if self.open_connections:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.config.shutdown_timeout)
            if self.open_connections:
                log.warning("%d requests still open at shutdown", self.open_connections)
        if self._started is not None:
            await self.lifecycle.close()

    async def __aenter__(self) -> AsgiApp:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            raise ValueError(f"pushwire serves http and websocket scopes, not {kind!r}")
        if not self._ready:
            await self.start()
        self.accepted += 1
        self.open_connections += 1
        try:
            if kind == "http":
                await self._http(scope, receive, send)
            else:
                await serve_websocket(
                    self.app, scope, receive, send, config=self.config, connections=self._websockets
                )
        finally:
            self.open_connections -= 1
            if self._idle is not None and not self.open_connections:
                self._idle.set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._step(send, "startup", self.start)
            elif message["type"] == "lifespan.shutdown":
                await self._step(send, "shutdown", self.close)
                return

    @staticmethod
    async def _step(send: Send, name: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except Exception as exc:
            log.exception("pushwire %s failed", name)
            await send({"type": f"lifespan.{name}.failed", "message": str(exc)})
            return
        await send({"type": f"lifespan.{name}.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        try:
            body = await read_body(receive, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            request = scope_request(scope)
            await _respond(send, request, app.error_response(request, exc))
            return
        if body is None:
            return  # the client went away
        request = scope_request(scope, body)
        answer: Response | StreamResponse
        try:
            result = app.handle_http(request)
            answer = result if isinstance(result, Response | StreamResponse) else await result
        except PushwireError as exc:
            answer = app.error_response(request, exc)
        except Exception as exc:  # the last resort (pushwire.guard)
            FAILURES.failed(f"http ({request.method} {request.path[:80]})", exc, request.remote)
            answer = app.error_response(request, PushwireError("internal error"))
        if isinstance(answer, StreamResponse):
            await serve_stream(
                answer,
                receive,
                send,
                config=self.config,
                clock=self.clock,
                connections=self._streams,
            )
            return
        await _respond(send, request, answer)


async def _respond(send: Send, request: Request, response: Response) -> None:
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    headers.append((b"content-length", b"%d" % len(response.body)))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body = b"" if request.method == "HEAD" else response.body
    await send({"type": "http.response.body", "body": body})
