"""The independent WebSocket conformance suite (Autobahn|Testsuite) against /echo, when a
`wstest` binary is installed ($WSTEST or PATH); skipped otherwise, as in CI, which has no
Python 2.7 for it.

A subset only (about 10 s): every case group but 9.* (large messages and many small ones,
performance) and 12.*/13.* (permessage-deflate: slow, thousands of messages a case), run once
with compression off and once on (`--websocket-compression`), the second with the first case
of each permessage-deflate group too (every negotiation variant of 13.*). The full run, all
517 cases, is `scripts/conformance.sh` (docs/benchmarks.md, "Conformance"), or this test with
PUSHWIRE_AUTOBAHN_FULL=1 (about an hour on a busy 2-core machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBSET = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*"
DEFLATE_CASES = ",12.1.1,12.1.2,12.2.1,12.3.1,12.4.1,12.5.1," + ",".join(
    f"13.{group}.1" for group in range(1, 8)
)
FULL = os.environ.get("PUSHWIRE_AUTOBAHN_FULL") == "1"


def _wstest() -> str | None:
    found = os.environ.get("WSTEST") or shutil.which("wstest")
    return found if found and os.access(found, os.X_OK) else None


@pytest.mark.skipif(_wstest() is None, reason="no wstest binary (set WSTEST or put it on PATH)")
@pytest.mark.parametrize("compression", ["0", "1"])
def test_autobahn_finds_no_failure_with_compression_off_and_on(compression: str) -> None:
    cases = "*" if FULL else SUBSET + (DEFLATE_CASES if compression == "1" else "")
    env = {**os.environ, "WSTEST": str(_wstest()), "CASES": cases, "COMPRESSION": compression}
    env.pop("OUTDIR", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "conformance.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=7200 if FULL else 600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED=0, WRONG CODE=0" in result.stdout
    assert "conformance: no failure" in result.stdout
    if compression == "1":
        # The permessage-deflate cases ran: none came out UNIMPLEMENTED.
        assert "UNIMPLEMENTED=0" in result.stdout
