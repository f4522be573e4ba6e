"""The npm package as a front-end developer gets it: `npm pack` of clients/js, the tarball
installed in a scratch copy of examples/js-bundler, type-checked with `tsc` and bundled with
esbuild from there, and the page driven in real Chromium against a pushwire server.

The page is served from a second loopback port (an origin of its own, as a bundled app is), and
talks to the server's `/pushwire`: two people in one room, one over WebSocket and one over
long-polling, see each other arrive and read what the other says.
"""

from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.js_package import checked, install_example, pack, run, tool
from tests.servers import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

WAIT_MS = 20_000
STATIC = Path(__file__).resolve().parents[2] / "src" / "pushwire" / "static"
CJS_USAGE = """import Pushwire = require('pushwire');
const connection = new Pushwire('ws://127.0.0.1:8000/pushwire', { user: 'alice' });
connection.addEventListener('gap', (event) => console.log(event.channel, event.to));
const subprotocol: string = Pushwire.SUBPROTOCOL;
console.log(subprotocol, connection.readyState === Pushwire.OPEN);
"""
SCRIPT_USAGE = """/// <reference types="pushwire/global" />
const connection = new Pushwire('/pushwire');
connection.addEventListener('transport', (event) => console.log(event.transport.toUpperCase()));
export {};
"""


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(tmp_path_factory.mktemp("npm-pack"))


@pytest.fixture(scope="module")
def app(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example, with the tarball installed, type-checked and built (dist/app.js)."""
    folder = install_example(tarball, tmp_path_factory.mktemp("npm-app"))
    checked([tool("npm"), "run", "--silent", "typecheck"], folder)
    checked([tool("npm"), "run", "--silent", "build"], folder)
    return folder


@pytest.fixture(scope="module")
def app_origin(app: Path) -> Iterator[str]:
    """The built example on its own loopback port, as a static server would serve it."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(app))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_the_tarball_holds_the_served_client_its_script_builds_and_types(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
        assert names == {
            "package/package.json",
            "package/README.md",
            "package/dist/pushwire.mjs",
            "package/dist/pushwire.js",
            "package/dist/pushwire.cjs",
            "package/types/pushwire.d.ts",
            "package/types/pushwire.d.cts",
            "package/types/global.d.ts",
        }

        def read(name: str) -> bytes:
            member = archive.extractfile(f"package/{name}")
            assert member is not None
            return member.read()

        # One source of truth: the package's client is the one the server serves.
        assert read("dist/pushwire.mjs") == (STATIC / "pushwire.mjs").read_bytes()
        assert read("dist/pushwire.js") == (STATIC / "pushwire.js").read_bytes()
        assert read("dist/pushwire.cjs") == (STATIC / "pushwire.js").read_bytes()
        assert json.loads(read("package.json"))["name"] == "pushwire"


def test_the_installed_package_imports_and_requires_in_node(app: Path) -> None:
    script = """
    const { createRequire } = await import('node:module');
    const esm = await import('pushwire');
    const required = createRequire(process.cwd() + '/')('pushwire');
    console.log(JSON.stringify({
      esm: esm.Pushwire.name, isDefault: esm.default === esm.Pushwire,
      required: required.name, open: required.OPEN, subprotocol: esm.Pushwire.SUBPROTOCOL,
    }));
    """
    found = json.loads(checked([tool("node"), "--input-type=module", "-e", script], app))
    assert found == {
        "esm": "Pushwire",
        "isDefault": True,
        "required": "Pushwire",
        "open": 1,
        "subprotocol": "pushwire.v1",
    }


@pytest.mark.parametrize(
    ("name", "usage", "module"),
    [("use.cts", CJS_USAGE, "node16"), ("page.ts", SCRIPT_USAGE, "esnext")],
    ids=["require", "script-global"],
)
def test_the_installed_types_serve_require_and_the_script_global_too(
    app: Path, name: str, usage: str, module: str
) -> None:
    """`require('pushwire')` (module node16) and the global of `<script src=pushwire.js>`
    (`pushwire/global`) get the class with its typed events; a wrong use is caught."""
    folder = app / f"check-{module}"
    folder.mkdir()
    resolution = "node16" if module == "node16" else "bundler"
    options = {"module": module, "moduleResolution": resolution, "lib": ["es2020", "dom"]}
    config = {"compilerOptions": {"strict": True, "noEmit": True, "types": [], **options}}
    (folder / "tsconfig.json").write_text(json.dumps({**config, "files": [name]}), "utf-8")
    (folder / name).write_text(usage, encoding="utf-8")
    checked([tool("tsc"), "-p", "tsconfig.json"], folder)

    bad_line = usage.count("\n") + 1
    (folder / name).write_text(usage + "connection.binaryType = 'text';\n", "utf-8")
    wrong = run([tool("tsc"), "-p", "tsconfig.json", "--pretty", "false"], folder)
    assert wrong.returncode != 0
    assert f"{name}({bad_line},1): error TS2322" in wrong.stdout, wrong.stdout


def test_the_example_bundles_the_installed_package(app: Path) -> None:
    bundle = (app / "dist" / "app.js").read_text(encoding="utf-8")
    assert "node_modules/pushwire/dist/pushwire.mjs" in bundle  # the package's ES module
    assert "pushwire.v1" in bundle


def _open(browser: Browser, app_origin: str, server: ServerProcess, **query: str) -> Page:
    params = {"server": server.ws_url("/pushwire"), "room": "lobby", **query}
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{app_origin}/index.html?{urllib.parse.urlencode(params)}")
    page.wait_for_selector("body[data-joined='lobby']")
    assert errors == []
    return page


def _wait_for_messages(page: Page, texts: list[str]) -> None:
    page.wait_for_function(
        "([count]) => document.querySelectorAll('#messages li').length >= count", arg=[len(texts)]
    )
    assert page.locator("#messages li").all_text_contents() == texts


def _say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_two_people_on_the_example_page_see_each_other_and_what_they_say(
    browser: Browser, app_origin: str, server: ServerProcess
) -> None:
    alice = _open(browser, app_origin, server, user="alice", transports="websocket")
    bob = _open(browser, app_origin, server, user="bob", transports="longpoll")
    try:
        for page, transport in ((alice, "websocket"), (bob, "longpoll")):
            page.wait_for_function(
                "([transport]) => document.querySelector('#state').textContent === 'open'"
                " && document.querySelector('#transport').textContent === transport"
                " && document.querySelector('#count').textContent === '2'",
                arg=[transport],
            )
            people = page.text_content("#people") or ""
            assert sorted(people.split(", ")) == ["alice", "bob"]

        said = ["bob: hello from bob", "alice: hi bob"]
        _say(bob, "hello from bob")
        for page in (alice, bob):
            _wait_for_messages(page, said[:1])
        _say(alice, "hi bob")
        for page in (alice, bob):
            _wait_for_messages(page, said)

        bob.click("#leave")
        bob.wait_for_selector("#state:text-is('closed (1000)')")
        alice.wait_for_function("() => document.querySelector('#count').textContent === '1'")
        assert alice.text_content("#people") == "alice"
    finally:
        for page in (alice, bob):
            page.context.close()
