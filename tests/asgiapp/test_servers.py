"""pushwire's ASGI door mounted under `/rt` in a Starlette app (tests/asgi_site.py), run by
real ASGI servers (uvicorn, hypercorn, daphne) in a process of their own, driven by the
`websockets` client, raw HTTP (httpx) and pushwire's own Python client."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pushwire.client import Message, connect
from tests.asgi_servers import SERVERS, AsgiProcess, running_asgi
from tests.asgi_site import MAX_MESSAGE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WAIT = 15.0
_tags = itertools.count(1)


@pytest.fixture(scope="module", params=SERVERS)
def site(request: pytest.FixtureRequest) -> Iterator[AsgiProcess]:
    """tests/asgi_site.py served by each ASGI server in turn."""
    with running_asgi(request.param) as running:
        yield running


def channel() -> str:
    return f"room{next(_tags)}"


async def _events(response: httpx.Response) -> AsyncIterator[str]:
    """The events of a `text/event-stream` answer, each as its lines."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            event, buffer = buffer.split("\n\n", 1)
            yield event


async def test_the_browser_client_and_health_are_served_under_the_prefix(
    site: AsgiProcess,
) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        script = await http.get(site.url("/rt/pushwire.js"))
        health = await http.get(site.url("/rt/healthz"))
        outside = await http.get(site.url("/pushwire.js"))
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"Pushwire" in script.content
    assert (health.status_code, health.text) == (200, "ok\n")
    assert outside.status_code == 404  # the host app's, not pushwire's


async def test_a_plain_websocket_echoes_text_and_binary(site: AsgiProcess) -> None:
    async with ws_connect(site.ws_url("/rt/echo")) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hello"
        await ws.send(b"\x00\x01")
        assert await asyncio.wait_for(ws.recv(), WAIT) == b"\x00\x01"


async def test_a_handler_publish_reaches_websocket_and_raw_sse_subscribers(
    site: AsgiProcess,
) -> None:
    room = channel()
    async with (
        httpx.AsyncClient(timeout=WAIT) as http,
        ws_connect(site.ws_url(f"/rt/ws/{room}")) as ws,
        http.stream("GET", site.url(f"/rt/sse/{room}")) as sse,
    ):
        assert sse.status_code == 200
        assert sse.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = _events(sse)
        assert await anext(events) == "retry: 2000"
        shout = await http.post(site.url(f"/shout/{room}"), content="from a handler")
        assert shout.json() == {"offset": 1}
        assert await asyncio.wait_for(ws.recv(), WAIT) == "from a handler"
        event = await asyncio.wait_for(anext(events), WAIT)
        lines = event.split("\n")
        assert lines[0].startswith("id: ") and lines[0].endswith(":1")
        assert lines[1:] == ["data: from a handler"]


async def test_the_http_api_publishes_to_a_raw_websocket(site: AsgiProcess) -> None:
    room = channel()
    async with ws_connect(site.ws_url(f"/rt/ws/{room}")) as ws:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            answer = await http.post(site.url(f"/rt/api/publish/{room}"), content="via the API")
        assert answer.status_code == 200
        assert answer.json()["offset"] == 1
        assert await asyncio.wait_for(ws.recv(), WAIT) == "via the API"


@pytest.mark.parametrize("transport", ["websocket", "sse", "stream", "longpoll", "polling"])
async def test_the_python_client_talks_over_each_transport(
    site: AsgiProcess, transport: str
) -> None:
    room = channel()
    url = site.url("/rt/pushwire")
    async with connect(url, user="alice", transports=[transport]) as client:
        await client.subscribe(room)
        await client.publish(room, "over " + transport)
        async with httpx.AsyncClient(timeout=WAIT) as http:
            await http.post(site.url(f"/shout/{room}"), content="from a handler")
        got = []
        async for item in client:
            assert isinstance(item, Message)
            got.append(item.data)
            if len(got) == 2:
                break
    assert got == ["over " + transport, "from a handler"]


async def test_the_iframe_transport_posts_each_envelope_to_its_parent(site: AsgiProcess) -> None:
    hello = urllib.parse.quote(json.dumps({"type": "hello", "user": "ida"}))
    origin = urllib.parse.quote("http://localhost:1")
    url = site.url(f"/rt/pushwire/iframe?hello={hello}&origin={origin}")
    async with httpx.AsyncClient(timeout=WAIT) as http, http.stream("GET", url) as frame:
        assert frame.status_code == 200
        assert frame.headers["content-type"].startswith("text/html")
        text = ""
        async for piece in frame.aiter_text():
            text += piece
            if "welcome" in text:
                break
    assert '<script>p({"type":"welcome"' in text


async def test_refusals_are_the_native_servers(site: AsgiProcess) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        nowhere = await http.get(site.url("/rt/nowhere"))
        evil = {"Origin": "http://evil.example"}
        poll = await http.post(site.url("/rt/pushwire/longpoll"), content="{}", headers=evil)
        misdirected = await http.get(site.url("/rt/healthz"), headers={"Host": "evil.example"})
        # Last: a server may close the connection after answering a body it did not read.
        too_big = await http.post(site.url("/rt/api/publish/x"), content=b"x" * (3 << 20))
    assert (nowhere.status_code, nowhere.text) == (404, "no such path /nowhere\n")
    assert poll.status_code == 403
    assert poll.json()["code"] == "forbidden"
    assert too_big.status_code == 413
    assert misdirected.status_code == 421
    # A WebSocket refused: the app's status where the server can send one (the ASGI
    # websocket.http.response extension), else the server's 403 (daphne).
    for path, headers, status in [
        ("/rt/nowhere", {}, 404),
        ("/rt/pushwire", {"Origin": "http://evil.example"}, 403),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(site.ws_url(path), additional_headers=headers):
                pass
        expected = 403 if site.server == "daphne" else status
        assert refused.value.response.status_code == expected


async def test_a_message_at_max_message_passes_and_one_over_closes_with_1009(
    site: AsgiProcess,
) -> None:
    async with ws_connect(site.ws_url("/rt/echo"), max_size=None) as ws:
        await ws.send("x" * MAX_MESSAGE)
        assert len(await asyncio.wait_for(ws.recv(), WAIT)) == MAX_MESSAGE
        await ws.send("x" * (MAX_MESSAGE + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT)
    if site.server == "daphne":
        # Daphne (autobahn) sends no close code under 3000 but 1000, and no reason
        # (docs/asgi.md): the connection is closed all the same.
        return
    assert ws.close_code == 1009
    assert ws.close_reason == "message over size limit (65537 > 65536 bytes)"


async def test_streams_and_polls_work_over_http2_under_hypercorn() -> None:
    room = channel()
    hello = json.dumps({"type": "hello", "user": "hana"})
    with running_asgi("hypercorn") as site:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=WAIT) as http:
            async with http.stream("GET", site.url(f"/rt/sse/{room}")) as sse:
                assert (sse.http_version, sse.status_code) == ("HTTP/2", 200)
                events = _events(sse)
                assert await anext(events) == "retry: 2000"
                await http.post(site.url(f"/shout/{room}"), content="over HTTP/2")
                event = await asyncio.wait_for(anext(events), WAIT)
                assert event.split("\n")[1:] == ["data: over HTTP/2"]
            poll = await http.post(site.url("/rt/pushwire/longpoll"), content=hello)
    assert (poll.http_version, poll.status_code) == ("HTTP/2", 200)
    assert json.loads(poll.content.splitlines()[0])["type"] == "welcome"
