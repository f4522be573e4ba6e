"""Shared fixtures: a real pushwire server process on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

_LISTENING = re.compile(rb"pushwire listening on http://([\d.:\[\]a-z]+):(\d+)")


@dataclass
class ServerProcess:
    """A `pushwire serve` child process; its stdout is collected in `output`."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    output: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def ws_url(self, path: str = "/echo") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def start_server(*args: str, startup_timeout: float = 15.0) -> ServerProcess:
    """Start `python -m pushwire serve --port 0 ARGS...` and wait for its listening line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "pushwire", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    output: list[bytes] = []
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = _LISTENING.search(line)
        if match:
            server = ServerProcess(process, match[1].decode(), int(match[2]), output)
            _drain_in_background(server)
            return server
    process.kill()
    raise RuntimeError("server did not start:\n" + b"".join(output).decode(errors="replace"))


def _drain_in_background(server: ServerProcess) -> None:
    import threading

    def drain() -> None:
        assert server.process.stdout is not None
        for line in server.process.stdout:
            server.output.append(line)

    threading.Thread(target=drain, daemon=True).start()


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with extra CLI arguments; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        server = start_server(*args)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A pushwire demo server with default settings."""
    return server_factory()
