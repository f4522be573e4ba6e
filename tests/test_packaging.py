"""How pushwire is installed and deployed: the extras the docs name exist (`pushwire[redis]`
brings redis-py with hiredis; the chat's prompt_toolkit is its own extra, out of the core), an
extra that is missing is one line that says what to install (not a traceback), `--version`,
no warning from redis-py at start, and the Dockerfile's and compose.yaml's command lines,
run as they are against a real Redis. (The image itself cannot be built here.)

The last test installs the package in a fresh venv from the package index, as a new user
would: `pip install .` then `pip install '.[redis]'`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest

import pushwire
from pushwire.api import AsyncClient
from pushwire.client import Message, connect
from tests.redis_helpers import RedisServer
from tests.servers import ServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET = "packaging-test-secret-0123456789-0123456789"
API_KEY = "packaging-test-api-key"
WAIT = 20.0
REDIS_HINT = (
    "pushwire serve: --broker redis://… needs redis: install pushwire[redis] "
    "(pip install 'pushwire[redis]')\n"
)
CHAT_HINT = (
    "pushwire chat needs prompt_toolkit: install pushwire[chat] (pip install 'pushwire[chat]')\n"
)
_LISTENING = re.compile(r"pushwire listening on http://([\d.]+):(\d+)")


def pushwire_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pushwire", *args]


def without(module: str, tmp_path: Path) -> dict[str, str]:
    """An environment in which `module` cannot be imported, as if it were not installed."""
    blocked = tmp_path / "blocked"
    blocked.mkdir(exist_ok=True)
    (blocked / f"{module}.py").write_text(
        f"raise ModuleNotFoundError({f'No module named {module!r}'!r}, name={module!r})\n"
    )
    path = [str(blocked), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


@contextmanager
def running(command: list[str], env: Mapping[str, str]) -> Iterator[tuple[int, list[str]]]:
    """Start a server's command line; its port and output lines once it listens."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            found = _LISTENING.search(line)
            if found:
                yield int(found[2]), output
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(output))
    finally:
        process.terminate()
        process.wait(15)


# -- the package -----------------------------------------------------------------------------


def test_pushwire_version_prints_the_packages_version() -> None:
    done = subprocess.run(pushwire_command("--version"), capture_output=True, text=True, check=True)
    assert done.stdout == f"pushwire {pushwire.__version__}\n"
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    version = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert version == {"attr": "pushwire.version.__version__"}


def test_the_core_leaves_redis_and_the_chat_to_their_extras() -> None:
    project = PYPROJECT["project"]
    core = " ".join(project["dependencies"]).lower()
    assert "redis" not in core
    assert "prompt_toolkit" not in core
    extras = project["optional-dependencies"]
    assert extras["redis"] == ["redis[hiredis]>=5"]
    assert extras["chat"] == ["prompt_toolkit>=3.0.40"]
    # The tests run what the extras bring.
    assert set(extras["redis"] + extras["chat"]) <= set(extras["test"])


def test_every_extra_the_docs_name_exists() -> None:
    texts = [ROOT / "README.md", ROOT / "Dockerfile", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        extra
        for path in texts
        for extra in re.findall(r"(?:pushwire|\.)\[([a-z]+)\]", path.read_text())
    }
    assert {"redis", "chat"} <= named
    assert named <= set(PYPROJECT["project"]["optional-dependencies"])


def test_serve_with_redis_and_no_redis_py_says_what_to_install(tmp_path: Path) -> None:
    env = without("redis", tmp_path)
    for extra in ([], ["--workers", "2"]):
        done = subprocess.run(
            pushwire_command("serve", "--port", "0", "--broker", "redis://127.0.0.1:1/0", *extra),
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout, done.stderr) == (2, "", REDIS_HINT)


def test_chat_without_prompt_toolkit_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        pushwire_command("chat", "http://127.0.0.1:1"),
        capture_output=True,
        text=True,
        env=without("prompt_toolkit", tmp_path),
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", CHAT_HINT)


async def test_a_redis_node_starts_and_publishes_without_a_warning(
    server_factory: ServerFactory, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py warned at start when given a synchronous Retry for its asyncio client."""
    monkeypatch.setenv("PYTHONWARNINGS", "default")  # every warning, once per place
    node = await asyncio.to_thread(server_factory, "--broker", redis_server.url)
    async with AsyncClient(node.url("")) as api:
        assert (await api.publish("room", "hi")).offset == 1
    assert await asyncio.to_thread(node.stop) == 0
    output = b"".join(node.output).decode()
    assert "Warning" not in output, output


# -- the Dockerfile and compose.yaml -----------------------------------------------------------


def dockerfile_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    commands = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert len(commands) == 1
    command: list[str] = json.loads(commands[0])
    return command


def compose_commands() -> dict[str, list[str]]:
    """Each compose service's `command` (written as JSON arrays, a subset of YAML)."""
    commands: dict[str, list[str]] = {}
    service = ""
    lines = iter((ROOT / "compose.yaml").read_text().splitlines())
    for line in lines:
        if re.fullmatch(r"  \w+:", line):
            service = line.strip(" :")
        elif line.startswith("    command: ["):
            text = line.removeprefix("    command: ")
            while not text.endswith("]"):
                text += next(lines).strip()
            commands[service] = json.loads(text)
    return commands


def served(command: list[str]) -> list[str]:
    """A `pushwire ...` command line run from this checkout, on a free port."""
    assert command[0] == "pushwire"
    return pushwire_command(*command[1:], "--port", "0")


def test_the_images_files_are_what_the_dockerfile_copies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir '.[redis]'" in text
    copied = re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE)
    sources = [name for line in copied for name in line.split()]
    assert sources == ["pyproject.toml", "README.md", "src"]
    kept = (ROOT / ".dockerignore").read_text().splitlines()
    for name in sources:
        assert (ROOT / name).exists()
        assert f"!{name}" in kept or f"!{name}/" in kept


def test_the_images_command_refuses_to_start_without_authentication() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    done = subprocess.run(
        served(dockerfile_command()), capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert "0.0.0.0 is not a loopback address and no authentication is configured" in done.stderr


async def test_the_images_command_serves_with_the_secrets_from_the_environment() -> None:
    env = {**os.environ, "PUSHWIRE_JWT_SECRET": SECRET, "PUSHWIRE_API_KEY": API_KEY}
    with running(served(dockerfile_command()), env) as (port, _):
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + "/healthz", timeout=WAIT) as health:
            assert health.status == 200
        async with AsyncClient(url, api_key=API_KEY) as api:
            assert (await api.publish("room", "hi")).offset == 1


def test_the_compose_file_in_the_docs_is_the_repositorys() -> None:
    docs = (ROOT / "docs" / "scaling.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", docs, re.DOTALL | re.MULTILINE)
    assert blocks == [(ROOT / "compose.yaml").read_text()]


async def test_the_compose_nodes_share_one_redis(redis_server: RedisServer) -> None:
    commands = compose_commands()
    assert commands["redis"][0] == "redis-server"
    nodes = [commands["node1"], commands["node2"]]
    text = (ROOT / "compose.yaml").read_text()
    assert text.count("PUSHWIRE_JWT_SECRET: ${PUSHWIRE_JWT_SECRET:?") == 2
    assert text.count("PUSHWIRE_API_KEY: ${PUSHWIRE_API_KEY:?") == 2
    env = {**os.environ, "PUSHWIRE_JWT_SECRET": SECRET, "PUSHWIRE_API_KEY": API_KEY}
    local = [
        [redis_server.url if part == "redis://redis:6379/0" else part for part in node]
        for node in nodes
    ]
    assert local != nodes  # both name the compose file's Redis
    token = jwt.encode({"sub": "alice", "exp": time.time() + 300}, SECRET, "HS256")
    with (
        running(served(local[0]), env) as (first, _),
        running(served(local[1]), env) as (second, _),
    ):
        url = f"http://127.0.0.1:{second}/pushwire"
        async with connect(url, token=token, transports=["websocket"]) as subscriber:
            await subscriber.subscribe("news")
            async with AsyncClient(f"http://127.0.0.1:{first}", api_key=API_KEY) as api:
                await api.publish("news", "from node 1")
            item = await asyncio.wait_for(subscriber.recv(), WAIT)
            assert isinstance(item, Message)
            assert item.data == "from node 1"


# -- a fresh venv ------------------------------------------------------------------------------


@pytest.mark.timeout(900)
async def test_a_fresh_venv_installs_the_core_then_the_redis_extra(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The README's commands: `pip install . && pushwire serve` serves, and says what to
    install for Redis; `pip install '.[redis]' && pushwire serve --broker redis://…` works,
    with hiredis."""
    source = tmp_path / "pushwire"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignored)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
            check=check,
        )

    await asyncio.to_thread(run, sys.executable, "-m", "venv", venv)
    pip, pushwire_script = venv / "bin" / "pip", venv / "bin" / "pushwire"
    await asyncio.to_thread(run, pip, "install", "-q", source)
    assert run(pushwire_script, "--version").stdout == f"pushwire {pushwire.__version__}\n"
    # The README's first command: `pip install . && pushwire serve`.
    core = [str(pushwire_script), "serve", "--port", "0"]
    with (
        running(core, env) as (port, _),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT) as health,
    ):
        assert health.status == 200
    refused = run(pushwire_script, "serve", "--broker", redis_server.url, check=False)
    assert (refused.returncode, refused.stderr) == (2, REDIS_HINT)

    await asyncio.to_thread(run, pip, "install", "-q", f"{source}[redis]")
    hiredis = run(
        venv / "bin" / "python", "-c", "import redis.utils as u; print(u.HIREDIS_AVAILABLE)"
    )
    assert hiredis.stdout == "True\n"
    command = [str(pushwire_script), "serve", "--port", "0", "--broker", redis_server.url]
    with running(command, env) as (port, output):
        async with AsyncClient(f"http://127.0.0.1:{port}") as api:
            assert (await api.publish("room", "hi")).offset == 1
        assert not any("Traceback" in line or "Warning" in line for line in output)
