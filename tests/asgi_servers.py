"""ASGI servers (uvicorn, hypercorn, daphne) running an ASGI app in a child process, on a
loopback socket the test made and passed down (no port is guessed)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import uvicorn

ROOT: Final = Path(__file__).resolve().parent.parent
#: The ASGI servers tested, each as the command line that serves `app` from file descriptor
#: `fd`.
SERVERS: Final = ("uvicorn", "hypercorn", "daphne")


def _command(server: str, app: str, fd: int) -> list[str]:
    if server == "uvicorn":
        return ["-m", "uvicorn", app, "--fd", str(fd), "--log-level", "warning"]
    if server == "hypercorn":
        return ["-m", "hypercorn", app, "--bind", f"fd://{fd}", "--log-level", "warning"]
    if server == "daphne":
        return ["-m", "daphne", "--fd", str(fd), "-v", "0", app]
    raise ValueError(f"unknown ASGI server {server!r}")


@dataclass
class AsgiProcess:
    """An ASGI server serving an app that mounts pushwire under `prefix`."""

    server: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    prefix: str

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


@contextmanager
def running_asgi(
    server: str,
    app: str = "tests.asgi_site:app",
    prefix: str = "/rt",
    timeout: float = 30.0,
    *,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
) -> Iterator[AsgiProcess]:
    """`server` serving `app` until the end of the block; ready once `prefix`/healthz
    answers 200. `cwd`: where the server runs (its modules are found there too); `env`:
    variables added to this process's environment."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    given = dict(os.environ, **(env or {}))
    paths = [str(ROOT / "src"), str(ROOT), given.get("PYTHONPATH", "")]
    given["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    process = subprocess.Popen(
        [sys.executable, *_command(server, app, listener.fileno())],
        pass_fds=[listener.fileno()],
        cwd=cwd,
        env=given,
    )
    listener.close()
    running = AsgiProcess(server, process, "127.0.0.1", port, prefix)
    try:
        _wait_ready(running, timeout)
        yield running
    finally:
        running.stop()


def _wait_ready(running: AsgiProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"{running.server} exited with {running.process.returncode}")
        try:
            with urllib.request.urlopen(running.url(running.prefix + "/healthz"), timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{running.server} did not answer within {timeout} s")


@asynccontextmanager
async def serving(app: Callable[..., Awaitable[None]], **options: Any) -> AsyncIterator[str]:
    """uvicorn serving `app` in this event loop on a free loopback port: its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)  # uvicorn sets a flag, no event: look again soon
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
