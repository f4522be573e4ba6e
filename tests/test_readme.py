"""The README's Python examples, taken from the Markdown as they stand, so they cannot drift:
every one passes `mypy --strict`, and each is run against a real server (the URL
`http://127.0.0.1:8000` becomes the test server's; the server example serves on a free port).

- the server example: its connect, subscribe and message handlers do what the comments say;
- the client loop: prints messages, and a `Gap` when history no longer reaches back after a
  drop (a server keeping one message of history, the connection cut while three are
  published), and the presence example lists the members;
- the token example connects with a token; the backend example publishes through
  `pushwire.api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from pushwire.api import AsyncClient
from pushwire.client import Message, RequestFailed, connect
from tests.integration.cut_proxy import CutProxy
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
WAIT = 20.0
SECRET = "readme-test-secret-0123456789-0123456789"
_LISTENING = re.compile(r"pushwire listening on (http://127\.0\.0\.1:\d+)")


def python_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)


def example(marker: str) -> str:
    """The one Python example of the README that holds `marker`."""
    found = [code for code in python_examples() if marker in code]
    assert len(found) == 1, f"{len(found)} Python examples in README.md hold {marker!r}"
    return found[0]


def load(code: str, url: str) -> dict[str, Any]:
    """Run an example's definitions with `url` for the README's server URL."""
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code.replace(README_URL, url), str(README), "exec"), namespace)
    return namespace


class Printed(io.StringIO):
    """What an example prints (`with printed:` catches `print`); `wait_for` a line. (Not a
    fixture: pytest sets `sys.stdout` again between a fixture's setup and the test.)"""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __enter__(self) -> Printed:
        self._redirect = contextlib.redirect_stdout(self)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._redirect.__exit__(None, None, None)

    def write(self, text: str) -> int:
        self.changed.set()
        return super().write(text)

    async def wait_for(self, wanted: Callable[[str], bool] | str) -> str:
        match = wanted if callable(wanted) else wanted.__eq__
        async with asyncio.timeout(WAIT):
            while True:
                for line in self.getvalue().splitlines():
                    if match(line):
                        return line
                self.changed.clear()
                await self.changed.wait()


def test_every_python_example_in_the_readme_passes_mypy_strict(tmp_path: Path) -> None:
    examples = python_examples()
    assert len(examples) >= 4
    files = []
    for number, code in enumerate(examples, 1):
        path = tmp_path / f"readme_example_{number}.py"
        path.write_text(code)
        files.append(path.name)
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@contextlib.contextmanager
def readme_server(tmp_path: Path) -> Iterator[str]:
    """The README's server example on a free port; its URL."""
    code = example("pushwire.run(")
    call = "pushwire.run(pushwire.App(hub))"
    assert call in code
    script = tmp_path / "readme_server.py"
    script.write_text(
        code.replace(call, "pushwire.run(pushwire.App(hub, pushwire.Config(port=0)))")
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        output = []
        for line in process.stdout:
            output.append(line)
            found = _LISTENING.search(line)
            if found:
                yield found[1]
                break
        else:
            raise AssertionError("the README's server did not start:\n" + "".join(output))
    finally:
        process.terminate()
        process.wait(15)


async def test_the_readme_server_example_runs_its_handlers(tmp_path: Path) -> None:
    with readme_server(tmp_path) as url:
        endpoint = url + "/pushwire"
        async with (
            connect(endpoint, user="alice", transports=["websocket"]) as alice,
            connect(endpoint, user="bob", transports=["websocket"]) as bob,
        ):
            await alice.subscribe("room")
            await bob.subscribe("room", presence=True)
            members = bob.presence["room"].members.values()
            infos = {member.user: member.info for member in members}
            assert infos["bob"] == {"name": "Alice A."}

            await alice.subscribe("staff:desk")  # on_subscribe lets alice in, not bob
            with pytest.raises(RequestFailed) as refused:
                await bob.subscribe("staff:desk")
            assert refused.value.code == "forbidden"

            await bob.send("hi all")  # on_message: published to room, and a direct to alice
            got = [await asyncio.wait_for(alice.recv(), WAIT) for _ in range(2)]
            assert sorted((m.channel or "", m.data) for m in got if isinstance(m, Message)) == [
                ("", "direct to alice"),
                ("room", "hi all"),
            ]


async def test_the_readme_client_loop_prints_messages_and_gaps(
    server_factory: ServerFactory,
) -> None:
    server = await asyncio.to_thread(server_factory, "--set", "history_size=1")
    proxy = CutProxy(server.host, server.port)
    await proxy.start()
    tasks: list[asyncio.Task[None]] = []
    with Printed() as printed:
        code = example("async for item in client")
        ending = "asyncio.run(main())\n"
        assert code.endswith(ending)
        examples = load(code.removesuffix(ending), f"http://127.0.0.1:{proxy.port}")
        tasks.append(asyncio.create_task(examples["main"]()))
        await printed.wait_for("room 1 hello")

        # The connection is cut and cannot come back while three are published: history
        # keeps the last one only, so the client's loop gets a Gap for the two before it.
        with socket.socket() as closed_port:
            closed_port.bind(("127.0.0.1", 0))  # bound, not listening: refused
            proxy.target_port = closed_port.getsockname()[1]
            proxy.cut()
            async with AsyncClient(server.url("")) as api:
                for text in ("a", "b", "c"):
                    await api.publish("room", text)
        proxy.target_port = server.port
        await printed.wait_for("room lost 2 to 3")
        await printed.wait_for("room 4 c")

        tasks.append(asyncio.create_task(examples["who_is_there"]()))
        members = await printed.wait_for(lambda line: line.startswith("["))
        assert "'bob'" in members
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await proxy.stop()


async def test_the_readme_token_example_connects_with_its_token(
    server_factory: ServerFactory,
) -> None:
    server = await asyncio.to_thread(server_factory, "--jwt-secret", SECRET)
    expires = int(time.time()) + 300
    token = jwt.encode({"sub": "alice", "exp": expires}, SECRET, "HS256")
    examples = load(example("token_refresh=fresh_token"), server.url(""))
    with Printed() as printed:
        client = await examples["connect_with_tokens"](server.url("/pushwire"), token)
        try:
            assert client.expires == expires
            await printed.wait_for(str(float(expires)))
        finally:
            await client.close()


async def test_the_readme_backend_example_publishes_through_the_api(
    server_factory: ServerFactory,
) -> None:
    server = await asyncio.to_thread(server_factory)
    examples = load(example("from pushwire.api import"), server.url(""))
    endpoint = server.url("/pushwire")
    with Printed() as printed:
        async with connect(endpoint, user="alice", transports=["websocket"]) as alice:
            await alice.subscribe("orders")
            await asyncio.to_thread(examples["order_shipped"], 42)
            await printed.wait_for("published at 1")
            received = [await asyncio.wait_for(alice.recv(), WAIT) for _ in range(2)]
            assert {m.data for m in received if isinstance(m, Message)} == {
                "order 42 shipped",
                "your order shipped",
            }
            assert await examples["who_is_in"]("orders") == ["alice"]
            await printed.wait_for("1 messages kept")


async def test_the_readme_sync_example_publishes_and_prints_the_rooms_past_then_its_own(
    server_factory: ServerFactory,
) -> None:
    server = await asyncio.to_thread(server_factory)
    examples = load(example("sync.connect("), server.url(""))
    async with connect(server.url("/pushwire")) as client:
        await client.publish("room", "earlier")
    with Printed() as printed:
        # A blocking call, from a thread of its own as a script would make it.
        await asyncio.to_thread(examples["notify"], "from a script")
    assert printed.getvalue().splitlines() == ["room: earlier", "room: from a script"]
