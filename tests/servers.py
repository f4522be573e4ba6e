"""A real `pushwire serve` child process on a free loopback port, for the tests that need one
(the `server` and `server_factory` fixtures in tests/conftest.py start them)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_LISTENING = re.compile(rb"pushwire listening on https?://([\d.:\[\]a-z]+):(\d+)")
_TCP_LISTENING = re.compile(rb"pushwire tcp listening on ([\d.:\[\]a-z]+):(\d+)")


@dataclass
class ServerProcess:
    """A `pushwire serve` child process; its stdout is collected in `output`."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    output: list[bytes] = field(default_factory=list)
    tcp_port: int | None = None

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
    want_tcp = "--tcp-port" in args
    found: ServerProcess | None = None
    tcp_port: int | None = None
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = _LISTENING.search(line)
        if match:
            found = ServerProcess(process, match[1].decode(), int(match[2]), output)
        tcp = _TCP_LISTENING.search(line)
        if tcp:
            tcp_port = int(tcp[2])
        if found is not None and (tcp_port is not None or not want_tcp):
            found.tcp_port = tcp_port
            _drain_in_background(found)
            return found
    process.kill()
    raise RuntimeError("server did not start:\n" + b"".join(output).decode(errors="replace"))


def _drain_in_background(server: ServerProcess) -> None:
    def drain() -> None:
        assert server.process.stdout is not None
        for line in server.process.stdout:
            server.output.append(line)

    threading.Thread(target=drain, daemon=True).start()


ServerFactory = Callable[..., ServerProcess]
