"""pushwire inside someone else's program: as an ASGI application (`asgi`), or the native
server started and stopped in their event loop (`Server`). Neither touches signals: the
program that embeds them owns its process (`pushwire.run` is the one that owns signals).

```python
hub = pushwire.Hub()
realtime = pushwire.asgi(hub)            # an ASGI 3 app: mount it, run it on uvicorn

async with pushwire.Server(hub, port=8001) as server:   # the native server, in this loop
    print(server.url)
    await hub.publish("room", "hello")
```
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from types import TracebackType

from .app import App
from .asgiapp import AsgiApp
from .core import Hub
from .errors import ConfigError, InvalidState
from .server.listener import Server as Listener

__all__ = ["AppLifecycle", "Server", "asgi"]


class AppLifecycle:
    """What an app needs around serving: its broker, its session routing between nodes,
    the backend proxy's connections."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def start(self) -> None:
        app = self.app
        await app.hub.broker.start()
        if app.router is not None:
            await app.router.start()

    async def close(self) -> None:
        app = self.app
        if app.router is not None:
            await app.router.close()
        await app.hub.broker.close()
        if app.hub.access.proxy is not None:
            await app.hub.access.proxy.close()


def _app(target: Hub | App) -> App:
    return target if isinstance(target, App) else App(target)


def asgi(target: Hub | App) -> AsgiApp:
    """An ASGI 3 application serving every pushwire endpoint of `target` (a `Hub`, served
    by the built-in routes, or an `App`), sharing its hub with the code around it: a
    request handler's `await hub.publish(...)` reaches every subscriber.

    Mount it under a prefix (`Mount("/rt", app=...)` in Starlette and FastAPI; a path test
    in Django's `asgi.py`) and enter it in the host app's lifespan (`async with realtime:`),
    or run it as the server's app (`uvicorn module:realtime`): docs/asgi.md.
    """
    app = _app(target)
    return AsgiApp(app, app.config, app.hub.clock, AppLifecycle(app))


class Server:
    """The native server (the fast path) inside a running event loop, on `host`:`port`
    (default: the config's; port 0 picks a free one), stopped gracefully on exit: WebSockets
    get 1001, streams and held long-polls a `close` envelope, answers in flight finish.
    No signal handler is installed: the embedding program decides when to stop.

    Raises:
        ConfigError: an `App` whose config binds another host (its Host and Origin checks
            are made for its own; give a `Hub`, or the host in the App's config).
    """

    def __init__(
        self,
        target: Hub | App,
        *,
        host: str | None = None,
        port: int | None = None,
        tcp_port: int | None = None,
    ) -> None:
        changes: dict[str, object] = {}
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
        if tcp_port is not None:
            changes["tcp_port"] = tcp_port
        if isinstance(target, App):
            if host is not None and host != target.config.host:
                raise ConfigError(
                    f"the app's config binds {target.config.host}, not {host}: give "
                    "pushwire.Server the hub, or the host in the app's Config"
                )
            self.app = target
        else:
            config = dataclasses.replace(target.config, **changes)  # type: ignore[arg-type]
            self.app = App(target, config)
        self.config = dataclasses.replace(self.app.config, **changes)  # type: ignore[arg-type]
        self.lifecycle = AppLifecycle(self.app)
        self._listener: Listener | None = None
        self._state = "new"

    @property
    def listener(self) -> Listener:
        """The native server's listening sockets and connections (made in the event loop:
        the app starts its timers when a door attaches)."""
        if self._listener is None:
            self._listener = Listener(self.app, self.config, self.app.hub.clock)
        return self._listener

    @property
    def port(self) -> int:
        """The HTTP/WebSocket port listened on (the one picked, for port 0)."""
        sockets = self._listener.sockets if self._listener is not None else []
        if not sockets:
            raise InvalidState("the server is not listening")
        port: int = sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """`http://host:port` (`https` with TLS) of the server."""
        host = self.listener.sockets[0].getsockname()[0] if self.listener.sockets else ""
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.config.tls_cert else 'http'}://{shown}:{self.port}"

    async def start(
        self, sock: socket.socket | None = None, *, tcp_sock: socket.socket | None = None
    ) -> None:
        """Start the broker, then listen (on `sock` and `tcp_sock` when given: sockets bound
        already, as `pushwire serve --workers` shares one port)."""
        if self._state != "new":
            raise InvalidState(f"the server is {self._state}: a Server starts once")
        self._state = "starting"
        await self.lifecycle.start()
        await self.listener.start(sock, tcp_sock=tcp_sock)
        self._state = "serving"

    async def close(self) -> None:
        """Shut down gracefully (within `shutdown_timeout`), then close the broker."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closed"
        # What was published in this loop turn is fanned out on the next one (the channels'
        # per-turn batch): let it go out before the connections close.
        await asyncio.sleep(0)
        self.app.stopping()
        await self.listener.shutdown()
        await self.lifecycle.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
