"""`pushwire doctor URL`: check a pushwire deployment from outside, as its clients reach it.

Each check is one line, `PASS`, `WARN`, `FAIL` or `SKIP`, and each failure says what to fix
in the proxy in front (nginx, HAProxy, Caddy). The checks, in order:

- `http`: `GET /healthz` answers 200 (when it does not, nothing else is checked);
- `keep-alive`: a second request goes over the same HTTP/1.1 connection;
- `tls` (https): the certificate verifies for the URL's host and is not about to expire;
- `websocket`: the upgrade to the endpoint (`/echo` unless `--endpoint`) passes, and on
  `/echo` a message comes back;
- `sse`, `stream`: the first event of a streamed response arrives without being held back by
  a buffering proxy, and on `/echo` an echo sent after it arrives on the open stream (the times
  are printed; over `--slow` seconds is a warning, over `--timeout` a failure);
- `idle`: a connection left idle for `--idle-check` seconds is still open and answers.

A failed `tls` skips every other check, a failed `http` the ones after it, and an endpoint
that does not welcome the hello (a token needed: `--token`) skips `idle`. The doctor speaks
HTTP/1.1 (as a WebSocket handshake does), through whatever is between it and pushwire.

Exit status: 1 when a check failed, 0 otherwise (warnings included), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Final

from .checks import (
    FIXES,
    Check,
    Options,
    Status,
    check_http,
    check_idle,
    check_stream,
    check_tls,
    check_websocket,
    skipped,
)
from .wire import Target

__all__ = [
    "HELP",
    "Check",
    "Options",
    "Status",
    "add_arguments",
    "command",
    "diagnose",
    "exit_status",
    "report",
    "run",
]


async def diagnose(url: str, options: Options) -> list[Check]:
    """Every check of `url`, in order. Raises: ValueError: a bad URL."""
    target = Target.parse(url, options.cafile)
    tls = await check_tls(target, options)
    names = ("http", "keep-alive", "websocket", "sse", "stream", "idle")
    if tls.status is Status.FAIL:
        return [tls, *(skipped(name, "tls") for name in names)]
    http, keep_alive = await check_http(target, options)
    if http.status is Status.FAIL:
        return [http, keep_alive, tls, *(skipped(name, "http") for name in names[2:])]
    websocket = await check_websocket(target, options)
    if websocket.fixes is FIXES["hello"]:
        refused = [await check_stream(target, options, kind) for kind in ("sse", "stream")]
        return [http, keep_alive, tls, websocket, *refused, skipped("idle", "the hello")]
    sse, stream, idle = await asyncio.gather(
        check_stream(target, options, "sse"),
        check_stream(target, options, "stream"),
        check_idle(target, options, websocket.status is Status.PASS),
    )
    return [http, keep_alive, tls, websocket, sse, stream, idle]


def report(checks: Sequence[Check]) -> list[str]:
    """The lines to print: one per check, then `fix:` lines under each failure or warning."""
    lines: list[str] = []
    for check in checks:
        lines.append(f"{check.status.value}  {check.name:<10}  {check.detail}")
        lines.extend(f"      fix: {fix}" for fix in check.fixes)
    failed = sum(check.status is Status.FAIL for check in checks)
    lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
    return lines


def exit_status(checks: Sequence[Check]) -> int:
    return 1 if any(check.status is Status.FAIL for check in checks) else 0


def run(url: str, options: Options) -> int:
    """Check `url`, print the report; the process's exit status."""
    checks = asyncio.run(diagnose(url, options))
    print(f"pushwire doctor {url}")
    for line in report(checks):
        print(line)
    return exit_status(checks)


#: The one-line help of `pushwire doctor` in `pushwire --help`.
HELP: Final = "check a deployment from outside: WebSocket, buffering, timeouts, TLS"


def add_arguments(doctor: argparse.ArgumentParser) -> None:
    """The arguments of `pushwire doctor`, on its (sub)parser."""
    doctor.add_argument("url", help="where clients reach pushwire, e.g. https://rt.example.com")
    doctor.add_argument(
        "--endpoint", default="/echo", help="the endpoint to try (default /echo: echoes back)"
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="wait per step (default 5)"
    )
    doctor.add_argument(
        "--slow",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="a streamed event later than this is a warning (default 1)",
    )
    doctor.add_argument(
        "--idle-check",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long an idle connection must survive (default 5; 0: skip)",
    )
    doctor.add_argument("--cafile", default=None, help="PEM of the CA(s) to trust (https)")
    doctor.add_argument("--token", default=None, help="connection token, if the endpoint needs one")


def command(args: argparse.Namespace) -> int:
    """Run `pushwire doctor` as parsed by `add_arguments`: the process's exit status."""
    checks = Options(
        args.endpoint, args.timeout, args.slow, args.idle_check, args.cafile, args.token
    )
    try:
        return run(args.url, checks)
    except ValueError as exc:
        print(f"pushwire doctor: {exc}", file=sys.stderr)
        return 2
