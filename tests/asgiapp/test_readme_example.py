"""The README's FastAPI example, taken from the Markdown as it stands and run on uvicorn:
its handler's `hub.publish` reaches a WebSocket subscriber under `/rt`. (tests/test_readme.py
checks every README example with mypy --strict.)"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.asgi_servers import serving

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parent.parent.parent / "README.md"
WAIT = 15.0


def fastapi_example() -> dict[str, Any]:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)
    found = [code for code in blocks if "pushwire.asgi(hub)" in code]
    assert len(found) == 1
    namespace: dict[str, Any] = {"__name__": "readme_fastapi"}
    exec(compile(found[0], str(README), "exec"), namespace)
    return namespace


async def test_the_readme_fastapi_example_publishes_from_its_handler() -> None:
    example = fastapi_example()
    async with (
        serving(example["app"], lifespan="on") as base,
        ws_connect(base.replace("http", "ws") + "/rt/ws/news") as ws,
        httpx.AsyncClient(timeout=WAIT) as http,
    ):
        answer = await http.post(base + "/announce", params={"text": "hello"})
        script = await http.get(base + "/rt/pushwire.js")
        assert answer.json() == {"offset": 1}
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hello"
    assert script.status_code == 200
