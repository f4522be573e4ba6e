"""A stand-in for an app's backend that pushwire's backend proxy asks (docs/security.md, "The
backend proxy"): a real process on a loopback port, the standard library's HTTP server, with
rules the tests know. `running_backend()` starts one; run as a script, it serves until killed.

Who a client is comes from its credential: the connect question's `token`, else the `session`
cookie among the forwarded headers.

- connect: no credential -> 4102; `refuse` -> 4101; `refuse:long` -> 4101 with a message of
  100 two-byte characters; `anon` -> allowed, no user;
  `slow:S` -> answers after S seconds (as user `slow`); `status:N` -> HTTP status N;
  `garbage` -> 200 with a body that is not JSON; `size:N` -> an allowed answer of exactly N
  bytes; `user:NAME` (a token) or `NAME` (the cookie) -> user NAME, info `{"name": NAME}`;
  `until:T:NAME` (a token) -> user NAME, whose credential expires at T (seconds since the
  epoch).
- subscribe: channel `secret:*` -> only the user `admin`, others 4101; `slow:S` -> after S
  seconds; `status:N` -> HTTP status N; anything else allowed.
- publish: data `forbidden words` -> 4101; data `slow:S`, `status:N` as the channels of
  subscribe; anything else allowed.

Every question is recorded; `GET /requests?min=N` answers the list once it holds N (or after
5 s), so a test waits for an event, not a sleep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_recorded: list[dict[str, Any]] = []
_changed = threading.Condition()


def _record(path: str, body: dict[str, Any]) -> None:
    with _changed:
        _recorded.append({"path": path, "body": body})
        _changed.notify_all()


def _refuse(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _credential(body: dict[str, Any]) -> str | None:
    token = body.get("token")
    if isinstance(token, str):
        return token
    cookie = SimpleCookie(body.get("headers", {}).get("cookie", ""))
    session = cookie.get("session")
    return f"user:{session.value}" if session is not None else None


def _connect(body: dict[str, Any]) -> tuple[int, Any]:
    credential = _credential(body)
    if credential is None:
        return 200, _refuse(4102, "sign in first")
    kind, _, value = credential.partition(":")
    if credential == "refuse":
        return 200, _refuse(4101, "you are banned")
    if credential == "refuse:long":
        return 200, _refuse(4101, "é" * 100)
    if credential == "anon":
        return 200, {"result": {"user": None}}
    if credential == "garbage":
        return 200, b"this is not JSON"
    if kind == "status":
        return int(value), b"backend error\n"
    if kind == "slow":
        time.sleep(float(value))
        return 200, {"result": {"user": "slow"}}
    if kind == "size":
        answer = b'{"result": {"user": "big", "info": {"pad": ""}}}'
        padding = b"x" * (int(value) - len(answer))
        return 200, answer.replace(b'"pad": ""', b'"pad": "' + padding + b'"')
    if kind == "user" and value:
        return 200, {"result": {"user": value, "info": {"name": value.title()}, "expires": None}}
    if kind == "until" and value:
        expires, _, user = value.partition(":")
        return 200, {"result": {"user": user, "expires": float(expires)}}
    return 200, _refuse(4102, "unknown credential")


def _special(word: object) -> tuple[int, Any] | None:
    """`slow:S` (answer after S seconds) and `status:N` (answer status N)."""
    kind, _, rest = str(word).partition(":")
    if kind == "slow":
        time.sleep(float(rest))
    elif kind == "status":
        return int(rest), b"backend error\n"
    return None


def _subscribe(body: dict[str, Any]) -> tuple[int, Any]:
    special = _special(body.get("channel"))
    if special is not None:
        return special
    if str(body.get("channel")).startswith("secret:") and body.get("user") != "admin":
        return 200, _refuse(4101, "not for you")
    return 200, {"result": {}}


def _publish(body: dict[str, Any]) -> tuple[int, Any]:
    special = _special(body.get("data"))
    if special is not None:
        return special
    if body.get("data") == "forbidden words":
        return 200, _refuse(4101, "mind your language")
    return 200, {"result": {}}


_ANSWERS = {"/connect": _connect, "/subscribe": _subscribe, "/publish": _publish}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pushwire pools its connections

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        path = urlsplit(self.path).path
        _record(path, body)
        answer = _ANSWERS.get(path)
        if answer is None:
            self._send(404, b"no such question\n")
            return
        status, content = answer(body)
        self._send(status, content if isinstance(content, bytes) else json.dumps(content).encode())

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        at_least = int(query.get("min", ["0"])[0])
        with _changed:
            _changed.wait_for(lambda: len(_recorded) >= at_least, timeout=5)
            recorded = list(_recorded)
        self._send(200, json.dumps(recorded).encode())

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # pushwire gave up waiting (a slow answer): nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Backend:
    """A running backend process."""

    process: subprocess.Popen[bytes]
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str | None = None, *, at_least: int = 0) -> list[dict[str, Any]]:
        """The bodies of the questions asked so far (those to `path`), once there are
        `at_least` questions in all (or after 5 s)."""
        with urllib.request.urlopen(self.url(f"/requests?min={at_least}"), timeout=10) as answer:
            recorded: list[dict[str, Any]] = json.loads(answer.read())
        return [item["body"] for item in recorded if path is None or item["path"] == path]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)


@contextmanager
def running_backend() -> Iterator[Backend]:
    """A backend process on a free loopback port, stopped on exit."""
    process = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(b"listening on "):
        process.kill()
        raise RuntimeError(f"the backend did not start: {line!r}")
    backend = Backend(process, int(line.split()[-1]))
    try:
        yield backend
    finally:
        backend.stop()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
