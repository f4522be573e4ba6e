"""The `redis` workload: fan-out through Redis across worker processes (issue 7).

One `redis-server` of the benchmark's own (a free loopback port, no persistence, stopped by
its PID at the end) serves every run; it is emptied (FLUSHALL) before each run. Each run
starts a fresh server and drives it with the fan-out load of the `fanout` workload:

- pushwire `serve --workers 2 --broker redis://…`: the publisher and the subscribers connect
  to the one port, and SO_REUSEPORT spreads them over the two workers, so most messages
  cross Redis on their way to a subscriber on the other worker;
- pushwire in one process with the memory broker, and in one process with the Redis broker:
  what Redis costs, without and with the second process;
- the same two pushwire forms with `--broker redis+cluster://…` on a Redis Cluster of three
  masters of the benchmark's own (bench/redis_cluster.py): what the sharded broker costs
  against one Redis (the workload's one channel lives on one master);
- python-socketio with `AsyncRedisManager` in 2 uvicorn worker processes (one shared
  listening socket), `emit` to a room, in order (`async_handlers=False`), and once more in
  python-socketio's default form (`async_handlers=True`), which reorders a publisher's
  messages on their way through Redis: the correctness check marks it invalid.

Nothing is pinned: the server processes, redis-server and the load generator share the
machine's cores, so on a 2-core machine the figures are those of 2 workers + Redis + load
generator on 2 cores. CPU and RSS are summed over every process of the server (the parent,
its workers) and the redis-server, read from /proc at the load generator's marks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cases import Case, figures
from .harness import (
    LOADGEN_CPU_LIMIT,
    BenchError,
    Drive,
    RunResult,
    ServerProcess,
    cpu_seconds,
    delivery_problems,
    drive_loadgen,
    free_port,
    python,
    rss_bytes,
    start_server,
)
from .options import Options
from .records import Figure, Run
from .redis_cluster import BenchCluster
from .scaling import connections_by_process, per_worker_ms
from .scaling import process_tree as process_tree  # bench/hold.py takes it from here
from .servers import (
    PEERS,
    PUSHWIRE,
    REPO,
    SIO_PUB,
    SIO_WS,
    Target,
    _fanout,
    _needs_modules,
    _publisher,
    _sio_ws,
    _ws,
)

WORKLOAD = "redis"
#: Worker processes of the multi-process targets.
WORKERS = 2
#: The stand-in for the Redis URL in a target's command, filled in once redis-server runs.
REDIS_URL = "{redis}"
#: The same for the Redis Cluster's URL (bench/redis_cluster.py).
CLUSTER_URL = "{redis-cluster}"
#: How long a server may take until all its workers are ready.
READY_TIMEOUT_S = 30.0

PW_WORKERS = f"pushwire, {WORKERS} workers, Redis broker"
PW_MEMORY = "pushwire, 1 process, memory broker"
PW_REDIS = "pushwire, 1 process, Redis broker"
PW_CLUSTER_WORKERS = f"pushwire, {WORKERS} workers, Redis Cluster broker (3 masters)"
PW_CLUSTER = "pushwire, 1 process, Redis Cluster broker (3 masters)"
SIO_REDIS = f"python-socketio, {WORKERS} uvicorn workers, AsyncRedisManager"
SIO_REDIS_DEFAULT = f"{SIO_REDIS} (default async_handlers)"
#: What the targets run from `--baseline-src` are called after their names.
BASELINE = "baseline"


@dataclass
class RedisTarget:
    """A `Target` and what the redis workload needs on top: readiness, whether it uses Redis."""

    target: Target
    uses_redis: bool
    ready: Callable[[ServerProcess], bool]
    #: On the Redis Cluster rather than the one redis-server.
    cluster: bool = False


def _needs_redis_server() -> str | None:
    return None if shutil.which("redis-server") else "redis-server not installed"


def _all(*checks: Callable[[], str | None]) -> Callable[[], str | None]:
    def check() -> str | None:
        return next((reason for reason in map(lambda c: c(), checks) if reason), None)

    return check


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:`port` (one per SO_REUSEPORT worker)."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                count += 1
    return count


def _listening_already(server: ServerProcess) -> bool:
    return True  # start_server already saw it listen


def _log_lines(text: str, count: int) -> Callable[[ServerProcess], bool]:
    return lambda server: server.log.read_text(errors="replace").count(text) >= count


def redis_targets(
    workers: Sequence[int] = (WORKERS,), baseline: Path | None = None
) -> list[RedisTarget]:
    """Every target of the redis workload, in table order: pushwire on Redis with each of
    `workers` worker counts (1: the one-process target), and its Redis targets once more
    from the source tree `baseline` when given."""
    pw_drive = {"fanout": _fanout(*_ws("/ws/bench"), *_publisher("/ws/bench"))}
    sio_drive = {
        "fanout": _fanout(
            *_sio_ws(), "--pub-path", SIO_WS, "--pub-init", "40", "--pub-ready", "40{", *SIO_PUB
        )
    }
    sio_command = [
        python(),
        str(PEERS / "socketio_redis_server.py"),
        "--port",
        "{port}",
        "--workers",
        str(WORKERS),
        "--redis",
        REDIS_URL,
    ]
    sio_needs = _all(_needs_redis_server, _needs_modules("socketio", "uvicorn", "uvloop", "redis"))
    pw_needs = _all(_needs_redis_server, _needs_modules("redis"))
    cluster_needs = _all(pw_needs, lambda: None if shutil.which("redis-cli") else "no redis-cli")
    sio_ready = _log_lines("Application startup complete.", WORKERS)

    def pw_workers(count: int) -> RedisTarget:
        return RedisTarget(
            Target(
                f"pushwire, {count} workers, Redis broker",
                "pushwire",
                [*PUSHWIRE, "--workers", str(count), "--broker", REDIS_URL],
                pw_drive,
                pw_needs,
            ),
            True,
            lambda server: listening_sockets(server.port) >= count,
        )

    pw_redis = RedisTarget(
        Target(PW_REDIS, "pushwire", [*PUSHWIRE, "--broker", REDIS_URL], pw_drive, pw_needs),
        True,
        _listening_already,
    )
    ours = [pw_workers(count) for count in sorted(set(workers)) if count > 1]
    targets = [
        *ours,
        RedisTarget(Target(PW_MEMORY, "pushwire", PUSHWIRE, pw_drive), False, _listening_already),
        pw_redis,
        RedisTarget(
            Target(
                PW_CLUSTER_WORKERS,
                "pushwire",
                [*PUSHWIRE, "--workers", str(WORKERS), "--broker", CLUSTER_URL],
                pw_drive,
                cluster_needs,
            ),
            True,
            lambda server: listening_sockets(server.port) >= WORKERS,
            cluster=True,
        ),
        RedisTarget(
            Target(
                PW_CLUSTER, "pushwire", [*PUSHWIRE, "--broker", CLUSTER_URL], pw_drive, pw_needs
            ),
            True,
            _listening_already,
            cluster=True,
        ),
        RedisTarget(
            Target(SIO_REDIS, "python-socketio", sio_command, sio_drive, sio_needs), True, sio_ready
        ),
        RedisTarget(
            Target(
                SIO_REDIS_DEFAULT,
                "python-socketio",
                [*sio_command, "--async-handlers"],
                sio_drive,
                sio_needs,
            ),
            True,
            sio_ready,
        ),
    ]
    if baseline is not None:
        for entry in [pw_redis, *ours]:
            target = dataclasses.replace(
                entry.target,
                name=f"{entry.target.name} ({BASELINE})",
                env={"PYTHONPATH": str(baseline.resolve())},
            )
            targets.append(dataclasses.replace(entry, target=target))
    return targets


def _redis_command(port: int, command: bytes) -> bytes:
    """One inline command to redis-server, its first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(command + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


class RedisServer:
    """The benchmark's own redis-server: free loopback port, no persistence, stopped by PID."""

    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"redis-server exited with {self.process.returncode}")
            with contextlib.suppress(OSError):
                if _redis_command(self.port, b"PING") == b"+PONG":
                    return
            time.sleep(0.05)
        self.stop()
        raise BenchError("redis-server did not answer PING within 10 s")

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def flush(self) -> None:
        """Empty every database: each run starts from an empty Redis."""
        reply = _redis_command(self.port, b"FLUSHALL")
        if reply != b"+OK":
            raise BenchError(f"redis-server answered FLUSHALL with {reply!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def connections_per_process(pids: list[int], port: int) -> list[int]:
    """Established TCP connections on 127.0.0.1:`port` held by each process with any."""
    return [held for held in connections_by_process(pids, port).values() if held]


def _sample(pids: list[int]) -> tuple[float, int]:
    cpu, rss = 0.0, 0
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that is gone adds nothing
            cpu += cpu_seconds(pid)
            rss += rss_bytes(pid)
    return cpu, rss


def run_group(
    binary: Path,
    drive: Drive,
    server: ServerProcess,
    redis: RedisServer | BenchCluster | None,
    timeout: float,
) -> Run:
    """One run of the load generator, the server's processes and redis-server sampled together.

    As `harness.run_loadgen`, but CPU and RSS are summed over the server's process tree and
    redis-server, nothing is pinned, and each worker's share of the connections is recorded.
    """
    argv = [str(binary), "--mode", drive.mode, "--port", str(server.port), "--sync", *drive.args]
    pids = sorted(process_tree(server.pid))
    everything = pids + (redis.pids if redis else [])
    _, rss_before = _sample(everything)
    marks: dict[str, tuple[float, int, float]] = {}
    held: dict[int, int] = {}
    each: dict[str, list[float]] = {}

    def mark(name: str) -> None:
        nonlocal held
        cpu, rss = _sample(everything)
        marks[name] = (cpu, rss, _sample(redis.pids)[0] if redis else 0.0)
        each[name] = [_sample([pid])[0] for pid in pids]
        if name == "start":
            held = connections_by_process(pids, server.port)

    result = drive_loadgen(argv, mark, timeout)
    if "start" in marks and "end" in marks:
        cpu = marks["end"][0] - marks["start"][0]
        rss = marks["end"][1]
        redis_cpu = marks["end"][2] - marks["start"][2]
    else:
        cpu, rss, redis_cpu = 0.0, _sample(everything)[1], 0.0
    measured = result.get("measured_s") or 0.0
    share = result["loadgen_cpu_measured_s"] / measured if measured else 0.0
    run = RunResult(result, cpu, rss, rss_before, share, delivery_problems(result))
    if share > LOADGEN_CPU_LIMIT:
        run.invalid.append(f"load generator at {share:.0%} of its core: it may be the bottleneck")
    return {
        **run.as_dict(),
        "redis_cpu_s": redis_cpu,
        "processes": len(everything),
        "connections_per_process": [count for count in held.values() if count],
        "worker_cpu": (
            [
                (end - start, held.get(pid, 0))
                for pid, start, end in zip(pids, each["start"], each["end"], strict=True)
            ]
            if "start" in each and "end" in each
            else []
        ),
    }


class RedisWorkload:
    """Runs the redis workload's cases; owns the redis-server they share."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.redis: RedisServer | None = None
        self.cluster: BenchCluster | None = None

    def run_cases(
        self, planned: list[tuple[Case, RedisTarget]], args: Options, binary: Path
    ) -> None:
        """Every run of every case, interleaved: run 1 of each target, then run 2 of each, ...

        On a machine shared with other work, the load changes from minute to minute;
        interleaved, each target's runs meet the same spread of it, so their medians compare.
        """
        ready: list[tuple[Case, RedisTarget, Target]] = []
        for case, entry in planned:
            reason = entry.target.requirement()
            if reason:
                case.skipped = reason
                print(f"{case.workload} N={case.n} {case.target}\n  skipped: {reason}")
                continue
            if self.redis is None:
                self.redis = RedisServer(self.log_dir / "redis-server.log")
            if entry.cluster and self.cluster is None:
                self.cluster = BenchCluster(self.log_dir)
            url = self.redis.url
            cluster = self.cluster.url if self.cluster is not None else CLUSTER_URL
            command = [
                part.replace(CLUSTER_URL, cluster).replace(REDIS_URL, url)
                for part in entry.target.command
            ]
            ready.append((case, entry, dataclasses.replace(entry.target, command=command)))
        for index in range(args.runs):
            for case, entry, target in ready:
                print(f"{case.workload} N={case.n} {case.target}", flush=True)
                message = self._run_once(case, entry, target, index, args, binary)
                print(f"  run {index + 1}: {message}", flush=True)

    def _run_once(
        self,
        case: Case,
        entry: RedisTarget,
        target: Target,
        index: int,
        args: Options,
        binary: Path,
    ) -> str:
        assert self.redis is not None
        drive = target.drive("fanout", case.n)
        assert drive is not None
        drive.args += ["--duration", str(args.duration), "--window", str(args.window)]
        drive.args += ["--timeout", str(30 + case.n / 200)]
        if args.smoke:  # a run that lost a message would wait 15 s for it
            drive.args += ["--drain", "2"]
        name = f"redis-{case.n}-{case.target}-{index}.log".replace(" ", "_").replace("/", "_")
        log = self.log_dir / name
        server = None
        backend: RedisServer | BenchCluster = self.redis
        if entry.cluster:
            assert self.cluster is not None
            backend = self.cluster
        try:
            backend.flush()
            server = start_server(target.command, REPO, log, False, None, target.env)
            _wait_ready(server, entry.ready)
            redis = backend if entry.uses_redis else None
            case.runs.append(run_group(binary, drive, server, redis, 120 + case.n / 100))
            return _progress(case.runs[-1])
        except BenchError as exc:
            case.errors.append(str(exc)[:300])
            return f"error: {case.errors[-1]}"
        finally:
            if server is not None:
                _stop(server)

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def _wait_ready(server: ServerProcess, ready: Callable[[ServerProcess], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready(server):
        if server.process.poll() is not None:
            raise BenchError(f"server exited with {server.process.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"not every worker was ready within {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def _start_time(pid: int) -> str | None:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return None


def _stop(server: ServerProcess) -> None:
    """Stop the server by its PID; then any worker that outlived it, by the worker's PID.

    A worker is known by PID and start time, so a PID the system has reused since is spared.
    """
    workers = [(pid, _start_time(pid)) for pid in process_tree(server.pid)[1:]]
    server.stop()
    for pid, started in workers:
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _progress(run: Run) -> str:
    lg = run["loadgen"]
    rate = lg["deliveries"] / lg["measured_s"] if lg["measured_s"] else 0.0
    flag = ("  INVALID: " + "; ".join(run["invalid"])) if run["invalid"] else ""
    spread = "/".join(str(n) for n in run.get("connections_per_process", []))
    return (
        f"{rate:,.0f}/s p50 {lg['latency_us']['p50'] / 1000:.2f} ms lost {lg['lost']} "
        f"dup {lg['duplicates']} CPU {run['server_cpu_s']:.2f} s (redis "
        f"{run.get('redis_cpu_s', 0.0):.2f} s) connections {spread} loadgen "
        f"{run['loadgen_cpu_share']:.0%}, CPU ms/1000 per worker "
        f"{'/'.join(f'{ms:.3f}' for ms in per_worker_ms(run))}{flag}"
    )


def ratio_lines(cases: list[Case]) -> list[str]:
    """pushwire with 2 workers over each other redis-workload target, per size."""
    group = [c for c in cases if c.workload == WORKLOAD]
    if not group:
        return []
    lines = [
        f"### The redis workload as ratios: {PW_WORKERS} over each (same run)",
        "",
        "| N | against | deliveries/s | p50 latency (theirs ÷ ours) | CPU per delivery "
        "(theirs ÷ ours) |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({c.n for c in group}):
        ours = next((c for c in group if c.n == n and c.target == PW_WORKERS), None)
        if ours is None:
            continue
        mine = figures(ours)
        for other in (c for c in group if c.n == n and c is not ours):
            theirs = figures(other)
            cells = [
                _ratio(mine, theirs, "rate", higher_is_better=True),
                _ratio(mine, theirs, "p50_ms", higher_is_better=False),
                _ratio(mine, theirs, "cpu_ms_per_1000", higher_is_better=False),
            ]
            if other.invalid:  # a figure of a run that delivered wrongly is not comparable
                cells = ["- (INVALID)"] * len(cells)
            lines.append(f"| {n:,} | {other.target} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _ratio(
    mine: dict[str, Figure],
    theirs: dict[str, Figure],
    metric: str,
    higher_is_better: bool,
) -> str:
    ours, others = mine.get(metric), theirs.get(metric)
    a, b = (ours["median"] if ours else None), (others["median"] if others else None)
    if not a or not b:
        return "-"
    return f"{(a / b if higher_is_better else b / a):.2f}x"
