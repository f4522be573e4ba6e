"""Start a server, drive it with the compiled load generator, measure both, stop the server.

One call of `run_once` is one run: a fresh server process pinned to one core, the load
generator pinned to the other, the server's CPU and RSS read from /proc/<pid> at the marks the
load generator prints, and the correctness figures (lost, duplicated, out of order) the load
generator counted from the sequence numbers in the payloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .records import LoadgenResult, Run

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN_SOURCE = BENCH_DIR / "loadgen.c"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: A run whose load generator used more than this share of its core(s) was limited by it: its
#: rate is the load generator's, and only the server's CPU per delivery compares servers.
LOADGEN_CPU_LIMIT = 0.90


class BenchError(Exception):
    """A run could not be carried out (server did not start, load generator failed)."""


def build_loadgen(build_dir: Path) -> Path:
    """Compile loadgen.c with the machine's gcc (cached by the source's hash)."""
    source = LOADGEN_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    binary = build_dir / f"loadgen-{digest}"
    if binary.exists():
        return binary
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise BenchError("no C compiler (gcc) on this machine: the load generator needs one")
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    done = subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(tmp), str(LOADGEN_SOURCE)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f"gcc failed on loadgen.c:\n{done.stderr}")
    tmp.rename(binary)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and of its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_SIZE


def cores() -> tuple[str, str] | None:
    """(server core, load generator cores: every other one, as a taskset list), or None when
    there is one core only."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or shutil.which("taskset") is None:
        return None
    return str(available[0]), ",".join(str(core) for core in available[1:])


@dataclass
class Drive:
    """What the load generator does: its arguments, less the port."""

    mode: str  # fanout | echo | connect
    args: list[str]
    pub_on_tcp_port: bool = False  # the subscribers use the TCP port, the publisher HTTP


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    tcp_port: int | None
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Stop this process by its PID: SIGTERM, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(
    command: list[str], cwd: Path, log: Path, tcp: bool, pin: str | None, env: dict[str, str]
) -> ServerProcess:
    port = free_port()
    tcp_port = free_port() if tcp else None
    argv = [
        part.replace("{port}", str(port)).replace("{tcp_port}", str(tcp_port)) for part in command
    ]
    if pin is not None:
        argv = ["taskset", "-c", pin, *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    server = ServerProcess(process, port, tcp_port, log)
    deadline = time.monotonic() + 20
    wanted = [port] + ([tcp_port] if tcp_port else [])
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited with {process.returncode}: {tail(log)}")
        if all(_listening(p) for p in wanted):
            return server
        time.sleep(0.05)
    server.stop()
    raise BenchError(f"server did not listen within 20 s: {tail(log)}")


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class RunResult:
    """One run: the load generator's JSON plus what was measured of the server."""

    loadgen: LoadgenResult
    server_cpu_s: float
    server_rss_bytes: int
    server_rss_before: int
    loadgen_cpu_share: float
    invalid: list[str] = field(default_factory=list)
    #: The load generator was near the limit of its core(s): the rate may be its limit.
    loadgen_limited: bool = False

    def as_dict(self) -> Run:
        return {
            "loadgen": self.loadgen,
            "server_cpu_s": self.server_cpu_s,
            "server_rss_bytes": self.server_rss_bytes,
            "server_rss_before": self.server_rss_before,
            "loadgen_cpu_share": self.loadgen_cpu_share,
            "loadgen_limited": self.loadgen_limited,
            "invalid": self.invalid,
        }


def run_loadgen(
    binary: Path, drive: Drive, server: ServerProcess, pin: str | None, timeout: float
) -> RunResult:
    """Run the load generator against `server`, sampling the server at its marks."""
    port = server.tcp_port if drive.pub_on_tcp_port else server.port
    argv = [str(binary), "--mode", drive.mode, "--port", str(port), "--sync", *drive.args]
    if drive.pub_on_tcp_port:
        argv += ["--pub-port", str(server.port)]
    if pin is not None:
        argv = ["taskset", "-c", pin, *argv]
    rss_before = rss_bytes(server.pid)
    marks: dict[str, tuple[float, int]] = {}

    def mark(name: str) -> None:
        marks[name] = (cpu_seconds(server.pid), rss_bytes(server.pid))

    result = drive_loadgen(argv, mark, timeout)
    first, last = ("start", "open") if drive.mode == "connect" else ("start", "end")
    if first in marks and last in marks:
        cpu = marks[last][0] - marks[first][0]
        rss = marks[last][1]
    else:
        cpu, rss = 0.0, rss_bytes(server.pid) if server.process.poll() is None else 0
    measured = result.get("measured_s") or 0.0
    # The busiest load generator process's share of a core, or all of them together over the
    # cores they were pinned to, whichever is higher (K processes may share one core).
    load_cores = len(pin.split(",")) if pin else (os.cpu_count() or 1)
    total = result.get("loadgen_cpu_measured_total_s", result["loadgen_cpu_measured_s"])
    per_core = total / min(load_cores, result.get("loadgen_procs", 1))
    share = max(result["loadgen_cpu_measured_s"], per_core) / measured if measured else 0.0
    run = RunResult(result, cpu, rss, rss_before, share, delivery_problems(result))
    if share > LOADGEN_CPU_LIMIT:
        run.loadgen_limited = True
        if drive.mode == "connect":
            run.invalid.append(
                f"load generator at {share:.0%} of its core: it may be the bottleneck"
            )
    return run


def drive_loadgen(argv: list[str], mark: Callable[[str], None], timeout: float) -> LoadgenResult:
    """Run the load generator `argv` to its end: `mark(name)` samples the servers at each of
    its marks (it waits meanwhile); its JSON result is returned.

    Raises:
        BenchError: no result, or still running after `timeout` seconds.
    """
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    result: LoadgenResult | None = None
    deadline = time.monotonic() + timeout
    try:
        for raw in process.stdout:
            line = raw.decode().strip()
            if line.startswith("MARK "):
                mark(line[5:])
                process.stdin.write(b"\n")
                process.stdin.flush()
            elif line.startswith("{"):
                result = json.loads(line)
            if time.monotonic() > deadline:
                raise BenchError(f"load generator still running after {timeout:.0f} s")
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if result is None:
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise BenchError(f"load generator gave no result (exit {process.returncode}): {stderr}")
    return result


def delivery_problems(result: LoadgenResult) -> list[str]:
    """Why a run's result is not a valid figure: the run failed, or a message was lost,
    doubled or reordered (empty when it is valid)."""
    problems = []
    if not result["ok"]:
        problems.append(f"run failed: {result['first_error'] or 'not every connection ready'}")
    if result["lost"] or result["duplicates"] or result["out_of_order"]:
        problems.append(
            f"incorrect delivery: {result['lost']} lost, {result['duplicates']} duplicated, "
            f"{result['out_of_order']} out of order"
        )
    return problems


@contextlib.contextmanager
def running(
    command: list[str], cwd: Path, log: Path, tcp: bool, pin: str | None, env: dict[str, str]
) -> Iterator[ServerProcess]:
    server = start_server(command, cwd, log, tcp, pin, env)
    try:
        yield server
    finally:
        server.stop()


def python() -> str:
    return sys.executable
