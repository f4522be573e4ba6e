"""pushwire inside another program: `pushwire.Server` in the program's own event loop (no
signal handler of its own), its graceful close, and `pushwire.run`'s arguments."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedOK

import pushwire
from pushwire.errors import ConfigError
from tests.asgi_servers import ROOT
from tests.helpers import held_poll

WAIT = 15.0


@pytest.mark.integration
async def test_an_embedded_server_leaves_sigint_to_its_program() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.embedded_program"], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    try:
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith(b"serving http://127.0.0.1:"), line
        url = line.split()[1].decode().replace("http://", "ws://")
        async with ws_connect(url + "/ws/room") as ws:
            process.send_signal(signal.SIGINT)
            # The program got its SIGINT, and the server was still serving when it published.
            assert await asyncio.wait_for(ws.recv(), WAIT) == "the program's own SIGINT"
            with pytest.raises(ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), WAIT)
            assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
        rest = await asyncio.to_thread(process.stdout.read)
        assert rest.decode().splitlines() == ["published 1", "closed; handler kept: True"]
        assert await asyncio.to_thread(process.wait, WAIT) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.integration
async def test_closing_answers_a_held_long_poll_at_once_with_a_close_envelope() -> None:
    hub = pushwire.Hub()
    server = pushwire.Server(hub, port=0)
    async with server, httpx.AsyncClient(timeout=WAIT) as http:
        poll = await held_poll(hub, http, f"{server.url}/pushwire/longpoll")
        began = time.monotonic()
        await server.close()
        answer = await poll
        took = time.monotonic() - began
    assert answer.status_code == 200
    assert answer.headers["Connection"] == "close"
    assert [json.loads(line) for line in answer.content.splitlines()] == [
        {"type": "close", "code": 1001, "reason": "server shutting down"}
    ]
    assert took < 2.0  # not the 10 s of shutdown_timeout, nor longpoll_timeout's 25


async def test_an_embedded_server_tells_its_port_and_url() -> None:
    async with pushwire.Server(pushwire.Hub(), port=0) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            assert (await http.get(server.url + "/healthz")).text == "ok\n"


def test_an_app_bound_to_another_host_is_refused() -> None:
    app = pushwire.App(pushwire.Hub())
    with pytest.raises(ConfigError) as refused:
        pushwire.Server(app, host="0.0.0.0")
    assert str(refused.value) == (
        "the app's config binds 127.0.0.1, not 0.0.0.0: give pushwire.Server the hub, or "
        "the host in the app's Config"
    )


def test_run_refuses_a_config_that_the_app_would_ignore() -> None:
    app = pushwire.App(pushwire.Hub())
    with pytest.raises(ConfigError) as refused:
        pushwire.run(app, pushwire.Config(port=9999))
    assert str(refused.value).startswith("pushwire.run(app, config): the app has its own config")
