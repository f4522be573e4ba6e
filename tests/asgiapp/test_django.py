"""docs/asgi.md's Django recipe (tests/asgi_django_site.py) on each ASGI server: pushwire
under `/rt` beside Django's views, which publish in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.asgi_servers import SERVERS, AsgiProcess, running_asgi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WAIT = 15.0


@pytest.fixture(scope="module", params=SERVERS)
def site(request: pytest.FixtureRequest) -> Iterator[AsgiProcess]:
    with running_asgi(request.param, app="tests.asgi_django_site:application") as running:
        yield running


@pytest.mark.parametrize("view", ["shout", "shout-sync"])
async def test_a_django_view_publishes_to_a_websocket_under_the_prefix(
    site: AsgiProcess, view: str
) -> None:
    room = f"{view}-room"
    async with ws_connect(site.ws_url(f"/rt/ws/{room}")) as ws:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            answer = await http.post(site.url(f"/{view}/{room}"), content="from Django")
            script = await http.get(site.url("/rt/pushwire.js"))
            missing = await http.get(site.url("/nowhere"))
        assert answer.json() == {"offset": 1}
        assert await asyncio.wait_for(ws.recv(), WAIT) == "from Django"
    assert script.status_code == 200
    assert missing.status_code == 404  # Django's
