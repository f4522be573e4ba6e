"""Every server the benchmark runs, and how the load generator drives each workload on it.

A `Target` is one server in one form (pushwire over raw WebSocket, python-socketio forced to
polling, ...). `drive(workload, n)` gives the load generator's arguments; None means the
target does not take part in that workload.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jwt

from .harness import BENCH_DIR, Drive, python

REPO = BENCH_DIR.parent
PEERS = BENCH_DIR / "peers"
NODE_DIR = BENCH_DIR / "node"

HELLO = '{"type":"hello"}'
HELLO_QUERY = quote(HELLO, safe="")
# Socket.IO: "40" connects to the default namespace, answered by "40{...}"; events are
# '42["name",data]' packets.
SIO_WS = "/socket.io/?EIO=4&transport=websocket"


def _ws(path: str, *extra: str) -> list[str]:
    return ["--proto", "ws", "--path", path, *extra]


def _publisher(path: str, *extra: str) -> list[str]:
    return ["--pub-path", path, *extra]


def _sio_ws(path: str = SIO_WS) -> list[str]:
    return ["--path", path, "--init", "40", "--ready", "40{", "--engineio-pong"]


PW_V1 = ["--subprotocol", "pushwire.v1", "--init", HELLO]
PW_V1_PUB = [
    "--pub-path",
    "/pushwire",
    "--pub-subprotocol",
    "pushwire.v1",
    "--pub-init",
    HELLO,
    "--pub-ready",
    "welcome",
    "--prefix",
    '{"type":"publish","channel":"bench","data":"',
    "--suffix",
    '"}',
]


@dataclass
class Target:
    """One server in one form."""

    name: str  # as printed in the tables
    server: str  # the program it runs (for versions and skip reasons)
    command: list[str]
    drives: dict[str, Callable[[int], Drive]]
    requirement: Callable[[], str | None] = lambda: None  # the reason it cannot run, or None
    tcp: bool = False
    env: dict[str, str] = field(default_factory=dict)
    transport: str = "websocket"

    def drive(self, workload: str, n: int) -> Drive | None:
        make = self.drives.get(workload)
        return make(n) if make else None


def _needs_modules(*modules: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            return (
                f"Python module(s) {', '.join(missing)} not installed (pip install -e '.[bench]')"
            )
        return None

    return check


def _needs_node(*packages: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if shutil.which("node") is None:
            return "node not installed"
        missing = [p for p in packages if not (NODE_DIR / "node_modules" / p).is_dir()]
        if missing:
            return f"npm package(s) {', '.join(missing)} not installed in bench/node"
        return None

    return check


def _fanout(*args: str) -> Callable[[int], Drive]:
    return lambda n: Drive("fanout", ["--conns", str(n), *args])


def _echo(*args: str) -> Callable[[int], Drive]:
    return lambda n: Drive("echo", ["--conns", str(n), *args])


def _connect(*args: str) -> Callable[[int], Drive]:
    return lambda n: Drive("connect", ["--conns", str(n), *args])


PUSHWIRE = [
    python(),
    "-m",
    "pushwire",
    "serve",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--set",
    "max_connections=30000",
    # The load generator's publisher and echo clients send as fast as the server takes
    # them: a flood by the default per-session rate (5,000 messages a second), which would
    # cut them. The check itself costs about 0.5 us per message received (docs/benchmarks.md).
    "--set",
    "messages_per_second=0",
    "--log-level",
    "warning",
]
PUSHWIRE_TCP = [*PUSHWIRE, "--tcp-port", "{tcp_port}"]
# Authentication on (docs/security.md): every connection shows a JWT, checked once per
# connection; the benchmark's token names one user and expires in a day, as a real token
# expires: each connection then waits for its expiry (the cost of the expiry sweep counts).
BENCH_JWT_SECRET = "pushwire benchmark secret, 32 bytes or more"
BENCH_TOKEN = jwt.encode(
    {"sub": "bench", "exp": int(time.time()) + 86400}, BENCH_JWT_SECRET, algorithm="HS256"
)
PUSHWIRE_JWT = [*PUSHWIRE, "--jwt-secret", BENCH_JWT_SECRET]


def _user_paths(path: str, n: int, tokens: bool) -> str:
    """A file of `n` paths to `path` (`--path-file`), each for another user: named in `?user=`
    (an open server takes the claim), or proved by a token of its own (the server checks a
    token it has never seen on every connection, as it would for n users)."""
    kind = "tokens" if tokens else "users"
    target = Path(tempfile.gettempdir()) / f"pushwire-bench-{kind}-{n}.txt"
    if not target.exists():
        lines = [
            f"{path}?token={jwt.encode({'sub': f'user{i}'}, BENCH_JWT_SECRET, algorithm='HS256')}"
            if tokens
            else f"{path}?user=user{i}"
            for i in range(n)
        ]
        target.write_text("\n".join(lines) + "\n")
    return str(target)


def _connect_users(path: str, tokens: bool) -> Callable[[int], Drive]:
    return lambda n: Drive(
        "connect", ["--conns", str(n), *_ws(path), "--path-file", _user_paths(path, n, tokens)]
    )


# The forever frame is recycled after iframe_max_bytes (a browser reopens it, resuming the
# session); the load generator does not, so the lab lets one frame last the whole run.
PUSHWIRE_IFRAME = [*PUSHWIRE, "--set", "iframe_max_bytes=4294967296"]
NODE_ENV = {"NODE_PATH": str(NODE_DIR / "node_modules")}
SIO_PUB = ["--prefix", '42["pub","', "--suffix", '"]']
SIO_ECHO = ["--prefix", '42["echo","', "--suffix", '"]']


def targets() -> list[Target]:
    """Every target, in table order: pushwire's forms, then the peers."""
    pw_raw_pub = _publisher("/ws/bench")
    sio_pub = ["--pub-path", SIO_WS, "--pub-init", "40", "--pub-ready", "40{", *SIO_PUB]
    peer_pub = _publisher("/fanout")

    def python_peer(script: str) -> list[str]:
        return [python(), str(PEERS / script), "--port", "{port}"]

    def node_peer(script: str) -> list[str]:
        return ["node", str(PEERS / script), "--port", "{port}"]

    return [
        Target(
            "pushwire",
            "pushwire",
            PUSHWIRE,
            {
                "fanout": _fanout(*_ws("/ws/bench"), *pw_raw_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
        ),
        Target(
            "pushwire (pushwire.v1)",
            "pushwire",
            PUSHWIRE,
            {
                "fanout": _fanout(
                    *_ws("/pushwire", *PW_V1),
                    "--init",
                    '{"type":"subscribe","channel":"bench"}',
                    "--ready",
                    "subscribed",
                    *PW_V1_PUB,
                ),
                "echo": _echo(
                    *_ws("/echo", *PW_V1),
                    "--ready",
                    "welcome",
                    "--prefix",
                    '{"type":"send","data":"',
                    "--suffix",
                    '"}',
                ),
            },
            transport="websocket (pushwire.v1)",
        ),
        Target(
            "pushwire ASGI (uvicorn)",
            "pushwire",
            python_peer("pushwire_asgi_server.py"),
            {
                "fanout": _fanout(*_ws("/ws/bench"), *pw_raw_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
            _needs_modules("uvicorn", "uvloop"),
            transport="websocket (ASGI door)",
        ),
        Target(
            "pushwire subscriber",
            "pushwire",
            PUSHWIRE,
            {"connect": _connect_users("/ws/bench", tokens=False)},
            transport="websocket (/ws/<channel>, a user each)",
        ),
        Target(
            "pushwire subscriber (JWT)",
            "pushwire",
            PUSHWIRE_JWT,
            {
                "fanout": _fanout(
                    *_ws(f"/ws/bench?token={BENCH_TOKEN}"),
                    *_publisher(f"/ws/bench?token={BENCH_TOKEN}"),
                ),
                "connect": _connect_users("/ws/bench", tokens=True),
            },
            transport="websocket (/ws/<channel>, a JWT each)",
        ),
        Target(
            "thin-Python ceiling",
            "thin",
            python_peer("thin_server.py"),
            {
                "fanout": _fanout(*_ws("/fanout"), *peer_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
            _needs_modules("uvloop"),
        ),
        Target(
            "websockets",
            "websockets",
            python_peer("websockets_server.py"),
            {
                "fanout": _fanout(*_ws("/fanout"), *peer_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
            _needs_modules("websockets", "uvloop"),
        ),
        Target(
            "aiohttp",
            "aiohttp",
            python_peer("aiohttp_server.py"),
            {
                "fanout": _fanout(*_ws("/fanout"), *peer_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
            _needs_modules("aiohttp"),
        ),
        Target(
            "Starlette (uvicorn)",
            "starlette",
            python_peer("starlette_server.py"),
            {
                "fanout": _fanout(*_ws("/fanout"), *peer_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
            _needs_modules("starlette", "uvicorn", "sse_starlette"),
        ),
        Target(
            "python-socketio (uvicorn)",
            "python-socketio",
            python_peer("socketio_server.py"),
            {
                "fanout": _fanout(*_sio_ws(), *sio_pub),
                "echo": _echo(*_sio_ws(), *SIO_ECHO),
                "connect": _connect(*_sio_ws()),
            },
            _needs_modules("socketio", "uvicorn"),
        ),
        Target(
            "Node ws",
            "node-ws",
            node_peer("node_ws_server.js"),
            {
                "fanout": _fanout(*_ws("/fanout"), *peer_pub),
                "echo": _echo(*_ws("/echo")),
                "connect": _connect(*_ws("/echo")),
            },
            _needs_node("ws"),
            env=NODE_ENV,
        ),
        Target(
            "Node socket.io",
            "node-socket.io",
            node_peer("node_socketio_server.js"),
            {
                "fanout": _fanout(*_sio_ws(), *sio_pub),
                "echo": _echo(*_sio_ws(), *SIO_ECHO),
                "connect": _connect(*_sio_ws()),
            },
            _needs_node("socket.io"),
            env=NODE_ENV,
        ),
        # --- server push over plain HTTP: SSE and long-poll ---
        Target(
            "pushwire SSE (/sse/<channel>)",
            "pushwire",
            PUSHWIRE,
            {"fanout": _fanout("--proto", "stream", "--path", "/sse/bench", *pw_raw_pub)},
            transport="sse",
        ),
        Target(
            "pushwire ASGI SSE (uvicorn)",
            "pushwire",
            python_peer("pushwire_asgi_server.py"),
            {"fanout": _fanout("--proto", "stream", "--path", "/sse/bench", *pw_raw_pub)},
            _needs_modules("uvicorn", "uvloop"),
            transport="sse (ASGI door)",
        ),
        Target(
            "pushwire stream",
            "pushwire",
            PUSHWIRE,
            {
                "fanout": _fanout(
                    "--proto",
                    "stream",
                    "--path",
                    f"/ws/bench/stream?hello={HELLO_QUERY}",
                    "--ready",
                    "welcome",
                    *pw_raw_pub,
                )
            },
            transport="stream",
        ),
        Target(
            "pushwire longpoll",
            "pushwire",
            PUSHWIRE,
            {
                "fanout": _fanout(
                    "--proto",
                    "pwpoll",
                    "--path",
                    "/ws/bench/longpoll",
                    "--ready",
                    "welcome",
                    "--poll-interval-ms",
                    "0",
                    *pw_raw_pub,
                )
            },
            transport="longpoll",
        ),
        Target(
            "aiohttp SSE (StreamResponse)",
            "aiohttp",
            python_peer("aiohttp_server.py"),
            {
                "fanout": _fanout(
                    "--proto", "stream", "--path", "/sse", "--ready", "ready", *peer_pub
                )
            },
            _needs_modules("aiohttp"),
            transport="sse",
        ),
        Target(
            "sse-starlette (uvicorn)",
            "sse-starlette",
            python_peer("starlette_server.py"),
            {
                "fanout": _fanout(
                    "--proto", "stream", "--path", "/sse", "--ready", "ready", *peer_pub
                )
            },
            _needs_modules("starlette", "uvicorn", "sse_starlette"),
            transport="sse",
        ),
        Target(
            "python-socketio polling",
            "python-socketio",
            python_peer("socketio_server.py"),
            {
                "fanout": _fanout(
                    "--proto", "siopoll", "--path", "/socket.io/", "--ready", "40{", *sio_pub
                )
            },
            _needs_modules("socketio", "uvicorn"),
            transport="longpoll",
        ),
        Target(
            "Node socket.io polling",
            "node-socket.io",
            node_peer("node_socketio_server.js"),
            {
                "fanout": _fanout(
                    "--proto", "siopoll", "--path", "/socket.io/", "--ready", "40{", *sio_pub
                )
            },
            _needs_node("socket.io"),
            env=NODE_ENV,
            transport="longpoll",
        ),
    ]


def lab_targets() -> list[Target]:
    """pushwire alone, over every transport: the transport lab."""
    pub = _publisher("/ws/bench")

    def stream(transport: str, *extra: str) -> Callable[[int], Drive]:
        return _fanout(
            "--proto",
            "stream",
            "--path",
            f"/ws/bench/{transport}?hello={HELLO_QUERY}{''.join(extra)}",
            "--ready",
            "welcome",
            *pub,
        )

    def poll(transport: str, interval: int) -> Callable[[int], Drive]:
        return _fanout(
            "--proto",
            "pwpoll",
            "--path",
            f"/ws/bench/{transport}",
            "--ready",
            "welcome",
            "--poll-interval-ms",
            str(interval),
            *pub,
        )

    def tcp_fanout(n: int) -> Drive:
        return Drive(
            "fanout",
            [
                "--conns",
                str(n),
                "--proto",
                "tcp",
                "--init",
                HELLO,
                "--init",
                '{"type":"subscribe","channel":"bench"}',
                "--ready",
                "subscribed",
                *pub,
            ],
            pub_on_tcp_port=True,
        )

    origin = "&origin=" + quote("http://127.0.0.1", safe="")
    all_targets = targets()
    return [
        Target(
            "websocket (raw)", "pushwire", PUSHWIRE, all_targets[0].drives, transport="websocket"
        ),
        Target(
            "websocket (pushwire.v1)",
            "pushwire",
            PUSHWIRE,
            all_targets[1].drives,
            transport="websocket (pushwire.v1)",
        ),
        Target(
            "sse (pushwire.v1)", "pushwire", PUSHWIRE, {"fanout": stream("sse")}, transport="sse"
        ),
        Target(
            "sse (raw /sse/<channel>)",
            "pushwire",
            PUSHWIRE,
            {"fanout": _fanout("--proto", "stream", "--path", "/sse/bench", *pub)},
            transport="sse (raw)",
        ),
        Target(
            "stream (NDJSON)",
            "pushwire",
            PUSHWIRE,
            {"fanout": stream("stream")},
            transport="stream",
        ),
        Target(
            "iframe",
            "pushwire",
            PUSHWIRE_IFRAME,
            {"fanout": stream("iframe", origin)},
            transport="iframe",
        ),
        Target(
            "longpoll", "pushwire", PUSHWIRE, {"fanout": poll("longpoll", 0)}, transport="longpoll"
        ),
        Target(
            "polling (50 ms)",
            "pushwire",
            PUSHWIRE,
            {"fanout": poll("polling", 50)},
            transport="polling",
        ),
        Target("tcp", "pushwire", PUSHWIRE_TCP, {"fanout": tcp_fanout}, tcp=True, transport="tcp"),
    ]


def versions() -> dict[str, str]:
    """The version of every server program, as installed now."""
    found: dict[str, str] = {}
    for label, dist in [
        ("pushwire", "pushwire"),
        ("websockets", "websockets"),
        ("aiohttp", "aiohttp"),
        ("starlette", "starlette"),
        ("uvicorn", "uvicorn"),
        ("sse-starlette", "sse-starlette"),
        ("python-socketio", "python-socketio"),
        ("python-engineio", "python-engineio"),
        ("uvloop", "uvloop"),
        ("httptools", "httptools"),
        ("matplotlib", "matplotlib"),
    ]:
        try:
            found[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[label] = "not installed"
    for package in ("ws", "socket.io"):
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        found[f"node {package}"] = (
            json.loads(manifest.read_text())["version"] if manifest.exists() else "not installed"
        )
    node = shutil.which("node")
    found["node"] = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else "not installed"
    )
    found["python"] = subprocess.run(
        [python(), "--version"], capture_output=True, text=True
    ).stdout.strip()
    gcc = shutil.which("gcc")
    found["gcc"] = (
        subprocess.run([gcc, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
        if gcc
        else "not installed"
    )
    return found


def install_node_peers() -> str | None:
    """`npm ci` (or `npm install`) into bench/node; the reason it failed, or None."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm not installed"
    if all((NODE_DIR / "node_modules" / p).is_dir() for p in ("ws", "socket.io")):
        return None
    command = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
    done = subprocess.run(
        [npm, command, "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return f"npm {command} failed: {done.stderr.strip()[-300:]}"
    return None
