"""Shared fixtures: a real pushwire server process on a free loopback port, a real
`redis-server` for the tests of several processes (tests/broker, tests/integration), and
Debian's Chromium for the pages' tests (tests/integration, tests/examples)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_ARGS
from tests.redis_cluster_helpers import RedisCluster, running_cluster
from tests.redis_helpers import RedisServer, running_redis
from tests.servers import ServerProcess, start_server
from tests.tmux_terminal import tmux_session_name

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with extra CLI arguments; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        server = start_server(*args)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A pushwire demo server with default settings."""
    return server_factory()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running `redis-server`, stopped at the end of the test (skips if not installed)."""
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A running Redis Cluster of three masters on loopback ports, stopped at the end of the
    test (skips if redis-server or redis-cli is not installed)."""
    with running_cluster(tmp_path) as cluster:
        yield cluster


@pytest.fixture
def redis_shards(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Three independent running `redis-server`s (the shards of `redis+shards://`), stopped
    at the end of the test (skips if not installed)."""
    with contextlib.ExitStack() as stack:
        servers = []
        for index in range(3):
            folder = tmp_path / f"shard{index}"
            folder.mkdir()
            servers.append(stack.enter_context(running_redis(folder)))
        yield servers


@pytest.fixture
def tmux_socket() -> Iterator[str]:
    """A private tmux server for the test's terminals (tests/tmux_terminal.py), killed after."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    name = tmux_session_name()
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's real Chromium driven by Playwright (sync API), shared by a test module.

    Module, not session, scope: while the sync API is active it owns an event loop of its
    own on this thread, and pytest-asyncio tests that run meanwhile fail.

    Skips when Playwright or the Chromium binary is missing; never downloads a browser.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
