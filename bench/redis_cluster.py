"""The redis workload's Redis Cluster: three masters of its own (no replicas, no persistence),
on free loopback ports whose cluster bus ports (10000 above) are free too, joined by
`redis-cli --cluster create`, emptied (FLUSHALL on each master) before each run, stopped by
PID at the end. Used by the `Redis Cluster` targets of bench/redis_fanout.py."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .harness import BenchError

#: Masters of the benchmark's cluster.
MASTERS = 3


def _free_pair() -> int:
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus, contextlib.suppress(OSError):
            bus.bind(("127.0.0.1", port + 10000))
            return port
    raise BenchError("no free pair of ports for a cluster node")


def _command(port: int, *words: str) -> bytes:
    """One command to a node, its whole first reply (inline protocol, a short reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        time.sleep(0.01)
        return sock.recv(65536)


class BenchCluster:
    """Three cluster masters; `url` is the `redis+cluster://` URL pushwire takes."""

    def __init__(self, log_dir: Path) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise BenchError("redis-server and redis-cli are needed for the Redis Cluster")
        log_dir.mkdir(parents=True, exist_ok=True)
        self._directory = tempfile.TemporaryDirectory(prefix="bench-cluster-")
        self.ports = [_free_pair() for _ in range(MASTERS)]
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for port in self.ports:
                folder = Path(self._directory.name) / str(port)
                folder.mkdir()
                argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
                argv += ["--appendonly", "no", "--daemonize", "no", "--dir", str(folder)]
                argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                with (log_dir / f"redis-cluster-{port}.log").open("wb") as out:
                    self.processes.append(
                        subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
                    )
            self._wait(lambda port: _command(port, "PING").startswith(b"+PONG"), "PING")
            addresses = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait(lambda port: b"cluster_state:ok" in _command(port, "CLUSTER", "INFO"), "ok")
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _wait(self, ready: object, what: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + 30
        for port, process in zip(self.ports, self.processes, strict=True):
            while True:
                if process.poll() is not None:
                    raise BenchError(f"redis-server on {port} exited with {process.returncode}")
                with contextlib.suppress(OSError):
                    if ready(port):
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"redis cluster node on {port} not {what} within 30 s")
                time.sleep(0.05)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def flush(self) -> None:
        """Empty every master: each run starts from an empty cluster."""
        for port in self.ports:
            reply = _command(port, "FLUSHALL")
            if not reply.startswith(b"+OK"):
                raise BenchError(f"redis cluster node {port} answered FLUSHALL with {reply!r}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._directory.cleanup()
