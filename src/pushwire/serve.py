"""Run an `App` until SIGINT or SIGTERM, then shut down gracefully; or N worker processes.

Workers (`--workers N`) each run a full server on the same port: every worker opens its own
listening socket with SO_REUSEPORT and the kernel spreads new connections over them. They share
nothing in memory, so they need a broker that reaches across processes (Redis). The parent
only supervises: it restarts a worker that dies (at most `MAX_RESTARTS` times a minute) and
passes SIGTERM/SIGINT on, then exits 0 once every worker has shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from typing import Final

from .app import App
from .config import Config
from .core import Hub
from .embed import Server
from .errors import ConfigError
from .logs import setup as setup_logging
from .server.fdlimit import raise_file_limit

__all__ = ["run", "run_workers", "serve"]

#: Worker restarts allowed within a minute before the parent gives up.
MAX_RESTARTS: Final = 10

log = logging.getLogger("pushwire")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT: several processes can listen on `port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(app: App, *, announce: bool = True, reuse_port: bool = False) -> None:
    """Serve `app` until SIGINT/SIGTERM. WebSockets get 1001, responses in flight finish."""
    config = app.config
    if config.gc_full_every > 0:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, config.gc_full_every)
    file_limit = raise_file_limit()
    server = Server(app)
    log.info(
        "max_connections %d (open-file limit %d, fd_reserve %d)",
        server.listener.door.max_connections,
        file_limit,
        config.fd_reserve,
    )
    if reuse_port:
        tcp_sock = None
        if config.tcp_port is not None:
            tcp_sock = reuse_port_socket(config.host, config.tcp_port)
        await server.start(reuse_port_socket(config.host, config.port), tcp_sock=tcp_sock)
    else:
        await server.start()
    listener = server.listener
    if announce:
        scheme = "https" if config.tls_cert else "http"
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"pushwire listening on {scheme}://{shown}:{port}", flush=True)
        for tcp in listener.tcp_servers:
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
        await server.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _runner() -> Callable[..., object]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        return asyncio.run
    return uvloop.run


def run(app: App | Hub | None = None, config: Config | None = None) -> None:
    """Serve until SIGINT or SIGTERM (blocking; uvloop when installed, asyncio otherwise):
    `app` (a `Hub` is served by the built-in routes), or the demo app of `config`.

    Raises:
        ConfigError: both an app and a config that is not the app's: an app is built with
            its config (`App(hub, config)`, `Hub(config=...)`), so a second one would be
            ignored.
    """
    if isinstance(app, Hub):
        app = App(app, config)
    elif app is None:
        app = App(config=config)
    elif config is not None and config != app.config:
        raise ConfigError(
            "pushwire.run(app, config): the app has its own config (app.config); give this "
            "one to the App or the Hub that builds it (App(hub, config), Hub(config=config))"
        )
    with contextlib.suppress(KeyboardInterrupt):
        _runner()(serve(app))
    sys.stdout.flush()


def _worker(make_app: Callable[[Config], App], config: Config) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes shutdown on as SIGTERM
    setup_logging(config.log_level, config.log_format)  # a spawned process starts unconfigured
    _runner()(serve(make_app(config), announce=False, reuse_port=True))


def run_workers(make_app: Callable[[Config], App], config: Config, workers: int) -> int:
    """Run `workers` server processes on one port; returns the exit status (0 on a clean stop).

    `make_app` builds each worker's app in the worker (it must be a module-level function: the
    workers are spawned, not forked, so no event loop or connection crosses over).
    """
    # Fix the ports first (0 means any free port), holding them so they stay ours.
    holders = [reuse_port_socket(config.host, config.port)]
    port = holders[0].getsockname()[1]
    tcp_port = config.tcp_port
    if tcp_port is not None:
        holders.append(reuse_port_socket(config.host, tcp_port))
        tcp_port = holders[1].getsockname()[1]
    import dataclasses

    config = dataclasses.replace(config, port=port, tcp_port=tcp_port)
    context = multiprocessing.get_context("spawn")
    stopping = False
    restarts: list[float] = []

    def start() -> SpawnProcess:
        process = context.Process(target=_worker, args=(make_app, config), daemon=True)
        process.start()
        return process

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(workers)]
    # Wait until the workers listen: a connection to the port then reaches one of them.
    for holder in holders:
        holder.close()
    _wait_listening(config.host, port)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "https" if config.tls_cert else "http"
    print(f"pushwire listening on {scheme}://{shown}:{port} ({workers} workers)", flush=True)
    if tcp_port is not None:
        print(f"pushwire tcp listening on {shown}:{tcp_port}", flush=True)
    status = 0
    while not stopping:
        time.sleep(0.2)
        for index, process in enumerate(processes):
            if process.is_alive() or stopping:
                continue
            now = time.monotonic()
            restarts[:] = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > MAX_RESTARTS:
                logging.error(
                    "workers keep dying (%d restarts in a minute): stopping", MAX_RESTARTS
                )
                stopping, status = True, 1
                break
            logging.warning(
                "worker %d died (exit %s): restarting it", process.pid, process.exitcode
            )
            processes[index] = start()
    for process in processes:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # SIGTERM: a graceful shutdown
    for process in processes:
        process.join(config.shutdown_timeout + 5)
        if process.is_alive():
            process.kill()
    return status


def _wait_listening(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no worker listens on {host}:{port} after {timeout} s")
