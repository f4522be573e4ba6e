"""What `pushwire doctor` prints and its exit status, from verdicts."""

from __future__ import annotations

import subprocess
import sys

from pushwire.doctor import Check, Status, exit_status, report
from pushwire.doctor.checks import FIXES, fail


def test_each_check_is_one_line_and_each_failure_is_followed_by_its_fixes() -> None:
    checks = [
        Check("http", Status.PASS, "GET /healthz: 200 in 3 ms (HTTP/1.1)"),
        fail("sse", "no byte of the body within 5 s", "buffering"),
        Check("tls", Status.SKIP, "http:// URL"),
    ]
    lines = report(checks)
    assert lines[0] == "PASS  http        GET /healthz: 200 in 3 ms (HTTP/1.1)"
    assert lines[1] == "FAIL  sse         no byte of the body within 5 s"
    assert lines[2 : 2 + len(FIXES["buffering"])] == [
        f"      fix: {fix}" for fix in FIXES["buffering"]
    ]
    assert lines[-2] == "SKIP  tls         http:// URL"
    assert lines[-1] == "1 check(s) failed"
    assert exit_status(checks) == 1


def test_warnings_and_skips_do_not_fail_the_run() -> None:
    checks = [
        Check("tls", Status.WARN, "expires in 3 days", FIXES["tls"]),
        Check("idle", Status.SKIP, "--idle-check 0"),
    ]
    assert exit_status(checks) == 0
    assert report(checks)[-1] == "all checks passed"


def test_every_fix_names_nginx_or_haproxy_settings_for_each_kind_of_failure() -> None:
    for kind in ("websocket", "buffering", "idle", "keep-alive"):
        text = " ".join(FIXES[kind])
        assert "nginx:" in text, kind
        assert "HAProxy:" in text, kind


def test_a_url_that_is_not_http_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", "doctor", "ftp://example.com"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "pushwire doctor: URL must be http://host[:port][/path] or https://…, "
        "not 'ftp://example.com'\n"
    )
