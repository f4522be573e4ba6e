"""The ASGI door in the test's own event loop (uvicorn in-process): its lifespan, and what
closing it does to WebSockets, streams and held long-polls."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedOK

import pushwire
from tests.asgi_servers import serving
from tests.helpers import held_poll

pytestmark = pytest.mark.integration

WAIT = 15.0


async def test_run_as_the_servers_app_its_lifespan_starts_and_stops_it() -> None:
    hub = pushwire.Hub()
    realtime = pushwire.asgi(hub)
    async with (
        serving(realtime, lifespan="on") as base,
        ws_connect(base.replace("http", "ws") + "/ws/room") as ws,
    ):
        await hub.publish("room", "in-process")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "in-process"
        assert realtime.accepted == 1
        assert realtime.open_connections == 1


async def test_closing_ends_websockets_streams_and_held_long_polls_at_once() -> None:
    hub = pushwire.Hub()
    realtime = pushwire.asgi(hub)
    async with (
        serving(realtime) as base,
        httpx.AsyncClient(timeout=WAIT) as http,
        ws_connect(base.replace("http", "ws") + "/echo") as ws,
    ):
        poll = await held_poll(hub, http, base + "/pushwire/longpoll")
        hello = json.dumps({"type": "hello", "user": "sam"})
        async with http.stream("POST", base + "/pushwire/stream", content=hello) as stream:
            lines = stream.aiter_lines()
            assert json.loads(await anext(lines))["type"] == "welcome"
            began = time.monotonic()
            await realtime.close()
            assert json.loads(await asyncio.wait_for(anext(lines), WAIT)) == {
                "type": "close",
                "code": 1001,
                "reason": "server shutting down",
            }
        answer = await poll
        took = time.monotonic() - began
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), WAIT)
        assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
        unavailable = await http.get(base + "/healthz")
    assert [json.loads(line) for line in answer.content.splitlines()] == [
        {"type": "close", "code": 1001, "reason": "server shutting down"}
    ]
    assert took < 2.0  # not the long-poll's 25 s
    assert unavailable.status_code == 503
