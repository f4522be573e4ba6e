"""`pushwire doctor` run as a command by the tests, and its verdicts read back."""

from __future__ import annotations

import asyncio
import os
import sys

#: Generous waits: a loaded machine must not turn a pass into a failure. A slow event is only
#: a warning (--slow), never tested here.
TIMEOUT = "8"
SLOW = "60"


async def doctor(url: str, *args: str) -> tuple[int, dict[str, str], str]:
    """Run `pushwire doctor URL ARGS`: its exit status, its verdict line by check, its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pushwire",
        "doctor",
        url,
        "--timeout",
        TIMEOUT,
        "--slow",
        SLOW,
        "--idle-check",
        "1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 90)
    output = stdout.decode()
    lines: dict[str, str] = {}
    for line in output.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "WARN", "FAIL", "SKIP"):
            name = rest.split()[0]
            lines[name] = f"{status} {rest[len(name) :].strip()}"
    assert process.returncode is not None
    return process.returncode, lines, output


def statuses(lines: dict[str, str]) -> dict[str, str]:
    return {name: line.split()[0] for name, line in lines.items()}


ALL_PASS = {
    "http": "PASS",
    "keep-alive": "PASS",
    "tls": "SKIP",
    "websocket": "PASS",
    "sse": "PASS",
    "stream": "PASS",
    "idle": "PASS",
}
