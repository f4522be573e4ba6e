"""max_connections defaults to what the process can hold: the open-file limit, raised to the
hard limit at start, minus `fd_reserve`."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from pushwire.server.fdlimit import connection_bound
from tests.servers import ServerFactory


def test_a_set_max_connections_is_kept() -> None:
    assert connection_bound(50, 256) == 50


def test_the_default_is_the_file_limit_minus_the_reserve() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_bound(0, 256) == soft - 256
    assert connection_bound(0, soft) == 1  # never below one connection


def test_the_soft_file_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048 or hard == resource.RLIM_INFINITY:
        pytest.skip(f"hard open-file limit {hard}: nothing to raise to")
    code = (
        "import resource; from pushwire.server.fdlimit import raise_file_limit; "
        "print(raise_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout.split()
    assert out == [str(hard), str(hard)]


@pytest.mark.integration
def test_the_server_logs_its_connection_bound(server_factory: ServerFactory) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server = server_factory("--set", "fd_reserve=100")
    limit = hard if hard != resource.RLIM_INFINITY else soft
    want = f"max_connections {limit - 100} (open-file limit {limit}, fd_reserve 100)"
    assert any(want in line.decode() for line in server.output), server.output
    server_set = server_factory("--set", "max_connections=77")
    assert any(b"max_connections 77 " in line for line in server_set.output), server_set.output
