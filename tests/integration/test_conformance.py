"""The independent WebSocket conformance suite (Autobahn|Testsuite) against /echo, when a
`wstest` binary is installed ($WSTEST or PATH); skipped otherwise, as in CI, which has no
Python 2.7 for it.

A subset only (about 10 s): every case group but 9.* (large messages and many small ones,
performance), and 12.*/13.* (permessage-deflate, which pushwire does not negotiate).
The full run is `scripts/conformance.sh` (docs/benchmarks.md, "Conformance").
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


def _wstest() -> str | None:
    found = os.environ.get("WSTEST") or shutil.which("wstest")
    return found if found and os.access(found, os.X_OK) else None


@pytest.mark.skipif(_wstest() is None, reason="no wstest binary (set WSTEST or put it on PATH)")
def test_autobahn_finds_no_failure_outside_the_performance_and_compression_cases() -> None:
    env = {**os.environ, "WSTEST": str(_wstest()), "CASES": SUBSET}
    env.pop("OUTDIR", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "conformance.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED=0, WRONG CODE=0" in result.stdout
    assert "conformance: no failure" in result.stdout
