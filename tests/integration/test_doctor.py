"""`pushwire doctor` run as a command against a real server: directly, behind a proxy that
passes everything through, and behind proxies with one fault each (tests/doctor_proxy.py).
Each run asserts the exit status and the verdict line of the checks the fault concerns."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import jwt
import pytest

from tests.asgi_servers import SERVERS, running_asgi
from tests.doctor_proxy import Faults, FaultyProxy
from tests.doctor_run import ALL_PASS, doctor, statuses
from tests.servers import ServerFactory, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@asynccontextmanager
async def proxy(server: ServerProcess, faults: Faults) -> AsyncIterator[str]:
    """A proxy with `faults` in front of `server`: its URL."""
    front = FaultyProxy(server.port, faults)
    await front.start()
    try:
        yield f"http://127.0.0.1:{front.port}"
    finally:
        await front.stop()


async def test_every_check_passes_against_pushwire_directly(server: ServerProcess) -> None:
    status, lines, output = await doctor(server.url(""))
    assert statuses(lines) == ALL_PASS, output
    assert status == 0
    assert lines["sse"].endswith("(not buffered)")
    assert "echo" in lines["websocket"]
    assert output.rstrip().endswith("all checks passed")


async def test_every_check_passes_behind_a_proxy_that_passes_everything_through(
    server: ServerProcess,
) -> None:
    async with proxy(server, Faults()) as url:
        status, lines, output = await doctor(url)
    assert statuses(lines) == ALL_PASS, output
    assert status == 0


@pytest.mark.parametrize(
    ("hold_head", "seen"),
    [
        (True, "no response head from /echo/{kind} within 8 s though /healthz answers"),
        (False, "no byte of the body within 8 s after the response head"),
    ],
)
async def test_a_proxy_that_buffers_streams_fails_sse_and_stream_with_the_fix(
    server: ServerProcess, hold_head: bool, seen: str
) -> None:
    async with proxy(server, Faults(buffer_bytes=65536, hold_head=hold_head)) as url:
        status, lines, output = await doctor(url)
    assert status == 1, output
    assert statuses(lines) == {**ALL_PASS, "sse": "FAIL", "stream": "FAIL"}, output
    for kind in ("sse", "stream"):
        assert lines[kind].startswith(f"FAIL {seen.format(kind=kind)}"), output
        assert "held back (buffered)" in lines[kind]
    assert "fix: nginx: proxy_buffering off;" in output
    assert "fix: Caddy: reverse_proxy { flush_interval -1 }" in output
    assert output.rstrip().endswith("2 check(s) failed")


async def test_a_proxy_that_passes_streamed_events_late_is_a_warning_that_fails_nothing(
    server: ServerProcess,
) -> None:
    # Every piece of a streamed response is 3 s late; over --slow 2 s is a warning.
    async with proxy(server, Faults(delay=3.0)) as url:
        status, lines, output = await doctor(url, "--slow", "2", "--timeout", "20")
    assert lines["sse"].startswith("WARN first event after "), output
    assert lines["sse"].endswith(": over 2 s, something may buffer")
    assert lines["stream"].startswith("WARN first event after "), output
    assert "fix: nginx: proxy_buffering off;" in output
    assert status == 0


async def test_a_proxy_that_drops_the_upgrade_headers_fails_websocket_with_the_fix(
    server: ServerProcess,
) -> None:
    async with proxy(server, Faults(drop_upgrade=True)) as url:
        status, lines, output = await doctor(url)
    assert status == 1, output
    assert statuses(lines) == {**ALL_PASS, "websocket": "FAIL"}, output
    assert lines["websocket"].startswith("FAIL upgrade to /echo refused: HTTP 4")
    assert "proxy_set_header Upgrade $http_upgrade" in output
    # The idle check falls back to a stream when WebSocket does not pass.
    assert "an idle stream (WebSocket failed) lived 1 s" in lines["idle"]


async def test_a_proxy_that_closes_every_connection_fails_keep_alive(
    server: ServerProcess,
) -> None:
    async with proxy(server, Faults(close_connections=True)) as url:
        status, lines, output = await doctor(url)
    assert status == 1, output
    assert statuses(lines) == {**ALL_PASS, "keep-alive": "FAIL"}, output
    assert "closes after one request" in lines["keep-alive"]
    assert "fix: HAProxy: option http-keep-alive" in output


async def test_a_path_that_drops_idle_connections_fails_idle_with_the_timeout_to_raise(
    server: ServerProcess,
) -> None:
    # The proxy drops a connection after 1 s without a byte; the doctor waits 4 s idle. Only
    # the idle verdict is asserted: under load another check may also pause for 1 s.
    async with proxy(server, Faults(idle_timeout=1.0)) as url:
        status, lines, output = await doctor(url, "--idle-check", "4")
    assert status == 1, output
    assert lines["idle"].startswith("FAIL an idle WebSocket was closed after"), output
    assert lines["idle"].endswith("s (cut without a close frame)")
    assert "fix: nginx: proxy_read_timeout 3600s;" in output
    assert "fix: HAProxy: timeout tunnel 1h;" in output


async def test_tls_is_checked_against_the_given_ca_and_a_near_expiry_warns(
    server_factory: ServerFactory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key))
    url = f"https://localhost:{server.port}"
    status, lines, output = await doctor(url, "--cafile", str(cert))
    # The test certificate is valid for one day: a warning, which fails nothing.
    assert statuses(lines) == {**ALL_PASS, "tls": "WARN"}, output
    assert status == 0
    assert "certificate valid for localhost" in lines["tls"]
    assert "fix: renew the certificate" in output


async def test_a_certificate_the_client_cannot_verify_fails_tls_and_stops_there(
    server_factory: ServerFactory, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key))
    status, lines, output = await doctor(f"https://localhost:{server.port}")
    assert status == 1, output
    assert lines["tls"].startswith("FAIL certificate not valid for localhost:"), output
    assert {lines[name].split()[0] for name in lines if name != "tls"} == {"SKIP"}


SECRET = "a test secret for pushwire doctor, 32+ bytes long"


async def test_an_endpoint_that_needs_a_token_is_checked_with_one_and_refused_without(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--jwt-secret", SECRET)
    token = jwt.encode({"sub": "doctor", "exp": time.time() + 300}, SECRET, "HS256")
    status, lines, output = await doctor(
        server.url(""), "--endpoint", "/pushwire", "--token", token
    )
    assert statuses(lines) == ALL_PASS, output
    assert status == 0
    # Not /echo: nothing comes back, so only the welcome is timed.
    assert lines["websocket"].startswith("PASS upgrade to /pushwire passed, welcome in")
    assert "echo" not in lines["websocket"] + lines["sse"]

    status, lines, output = await doctor(server.url(""), "--endpoint", "/pushwire")
    assert status == 1, output
    assert statuses(lines) == {
        **ALL_PASS,
        "websocket": "FAIL",
        "sse": "FAIL",
        "stream": "FAIL",
        "idle": "SKIP",
    }, output
    assert lines["websocket"].startswith("FAIL /pushwire did not welcome the hello (unauthorized:")
    assert "fix: give --token with a valid connection token" in output


@pytest.mark.parametrize("asgi_server", SERVERS)
async def test_pushwire_mounted_in_an_asgi_app_passes_under_each_asgi_server(
    asgi_server: str,
) -> None:
    # The URL's path is where pushwire is mounted (docs/asgi.md): /rt/healthz, /rt/echo.
    with running_asgi(asgi_server) as site:
        status, lines, output = await doctor(site.url("/rt"))
    assert statuses(lines) == ALL_PASS, output
    assert status == 0
    assert lines["websocket"].startswith("PASS upgrade to /echo passed")
