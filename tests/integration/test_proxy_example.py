"""docs/security.md's worked example, as written there: its FastAPI backend (run by uvicorn)
is the connect and subscribe proxy of a pushwire server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import PUSHWIRE_V1
from tests.servers import ServerFactory

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
HEADING = "## Worked example: a FastAPI backend as the connect and subscribe proxy"
WAIT = 5.0


def example_backend() -> str:
    """The first Python block under the example's heading."""
    text = DOC.read_text()
    found = re.search(r"```python\n(.*?)```", text[text.index(HEADING) :], re.DOTALL)
    assert found is not None
    return found[1]


@pytest.fixture
def backend_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    (tmp_path / "backend.py").write_text(example_backend())
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend:app", "--host", "127.0.0.1", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            running = re.search(rb"Uvicorn running on (http://[\d.]+:\d+)", line)
            if running:
                yield running[1].decode()
                break
        else:
            raise RuntimeError("uvicorn did not start")
    finally:
        process.terminate()
        process.wait(10)


async def answers(server_url: str, cookie: str | None, channel: str) -> list[dict[str, Any]]:
    """What a browser with `cookie` hears when it says hello and subscribes to `channel`: the
    welcome and the subscription's answer, or what it heard before the server closed (then
    `{"closed": code, "reason": reason}` last)."""
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    ws = await connect(server_url, subprotocols=PUSHWIRE_V1, additional_headers=headers)
    await ws.send(json.dumps({"type": "hello"}))
    heard: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT):
            heard.append(json.loads(await ws.recv()))
            if heard[0]["type"] == "welcome":
                await ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": channel}))
                heard.append(json.loads(await ws.recv()))
                await ws.close()
                return heard
            await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return [*heard, {"closed": closed.rcvd.code, "reason": closed.rcvd.reason}]
    raise AssertionError(f"neither welcomed nor closed: {heard}")


async def test_the_fastapi_backend_of_the_docs_is_the_proxy(
    backend_url: str, server_factory: ServerFactory
) -> None:
    server = server_factory(
        "--connect-proxy", f"{backend_url}/pushwire/connect",
        "--subscribe-proxy", f"{backend_url}/pushwire/subscribe",
    )  # fmt: skip
    url = server.ws_url("/pushwire")
    welcome, subscribed = await answers(url, "k3y-of-bob", "chat:lobby")
    assert (welcome["type"], welcome["user"]) == ("welcome", "bob")
    assert (subscribed["type"], subscribed["channel"]) == ("subscribed", "chat:lobby")
    _, refused = await answers(url, "k3y-of-bob", "staff:ops")
    assert (refused["type"], refused["code"], refused["message"]) == (
        "error",
        "forbidden",
        "staff only",
    )
    _, subscribed = await answers(url, "k3y-of-alice", "staff:ops")
    assert subscribed["type"] == "subscribed"
    error, closed = await answers(url, None, "chat:lobby")
    assert (error["code"], error["message"]) == ("unauthorized", "sign in first")
    assert closed == {"closed": 4102, "reason": "sign in first"}
