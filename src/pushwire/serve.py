"""Run an `App` until SIGINT or SIGTERM, then shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from .app import App
from .config import Config
from .http.server import Server

__all__ = ["run", "serve"]

log = logging.getLogger("pushwire")


async def serve(app: App, *, announce: bool = True) -> None:
    """Serve `app` until SIGINT/SIGTERM. WebSockets get 1001, responses in flight finish."""
    config = app.config
    server = Server(app, config)
    await app.hub.broker.start()
    await server.start()
    if announce:
        scheme = "https" if config.tls_cert else "http"
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"pushwire listening on {scheme}://{shown}:{port}", flush=True)
        for tcp in server.tcp_servers:
            for sock in tcp.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                print(f"pushwire tcp listening on {shown}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        app.shutting_down = True
        await server.shutdown()
        await app.hub.broker.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(app: App | None = None, config: Config | None = None) -> None:
    """Blocking entry point: uvloop when installed, asyncio otherwise."""
    app = app or App(config=config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(app))
    sys.stdout.flush()
