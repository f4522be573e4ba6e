"""A hand-over whose welcome never reached the client (issue 14, problem 3): the client comes
back with the id it knows, at either node, and gets its session (not `expired`), because the
old home keeps a pointer to the new one for `session_grace`."""

from __future__ import annotations

import time

import pytest

from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import TcpClient, stats

pytestmark = pytest.mark.integration


def until_sessions(node: ServerProcess, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while stats(node)["sessions"] != count:
        assert time.monotonic() < deadline, stats(node)
        time.sleep(0.02)


def handed_over_unseen(first: ServerProcess, second: ServerProcess) -> tuple[str, str]:
    """A session opened on `first`, then taken over by `second` for a client that never read
    the welcome (its connection then dropped): the old id and the resume secret."""
    opener = TcpClient(first)
    welcome = opener.hello(user="ana")
    opener.close()
    until_sessions(first, 1)  # detached, waiting for its client
    session, secret = welcome["session"], welcome["resume"]
    unseen = TcpClient(second)
    unseen.send({"type": "hello", "session": session, "resume": secret})
    until_sessions(second, 1)  # adopted there: its welcome is written, and never read
    until_sessions(first, 0)
    unseen.close()
    return session, secret


@pytest.mark.parametrize("back_at", ["old home", "new home"])
def test_a_client_that_missed_its_welcome_resumes_its_session(
    server_factory: ServerFactory, redis_server: RedisServer, back_at: str
) -> None:
    first, second = (
        server_factory("--broker", redis_server.url, "--tcp-port", "0") for _ in range(2)
    )
    session, secret = handed_over_unseen(first, second)
    client = TcpClient(first if back_at == "old home" else second)
    welcome = client.hello(session=session, resume=secret)
    assert welcome["resumed"] is True, welcome
    assert "expired" not in welcome
    assert welcome["user"] == "ana" and welcome["resume"] == secret
    # One session in all: nothing was left behind on either node.
    assert stats(first)["sessions"] + stats(second)["sessions"] == 1
    client.close()


def test_the_pointer_needs_the_resume_secret(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    first, second = (
        server_factory("--broker", redis_server.url, "--tcp-port", "0") for _ in range(2)
    )
    session, _secret = handed_over_unseen(first, second)
    thief = TcpClient(first)
    welcome = thief.hello(session=session, resume="not the secret")
    assert welcome["resumed"] is False and welcome["expired"] == session
    thief.close()
    assert stats(second)["sessions"] == 1  # the session stays where it is


@pytest.mark.parametrize(("kept", "resumed"), [(1, True), (0, False)])
def test_the_pointers_are_bounded_by_max_moved_sessions(
    server_factory: ServerFactory, redis_server: RedisServer, kept: int, resumed: bool
) -> None:
    bound = ("--set", f"max_moved_sessions={kept}")
    first, second = (
        server_factory("--broker", redis_server.url, "--tcp-port", "0", *bound) for _ in range(2)
    )
    session, secret = handed_over_unseen(first, second)
    client = TcpClient(first)
    welcome = client.hello(session=session, resume=secret)
    assert welcome["resumed"] is resumed, welcome
    client.close()
