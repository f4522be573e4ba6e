"""examples/fastapi as its README runs it: uvicorn serving the FastAPI app, pushwire mounted
under /rt, driven in Chromium and a `pushwire chat` terminal.

The app signs users in with its own form and session cookie and gives them pushwire
connection tokens; `POST /announce` publishes in-process (`await hub.publish`), and the
message reaches the page (pushwire.js) and the terminal. Without a sign-in there is no page,
no token, and pushwire refuses the WebSocket with 4102.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket

from pushwire.client import ClientClosed, Message
from pushwire.client import sync as pushwire_client
from tests.asgi_servers import AsgiProcess, running_asgi
from tests.tmux_terminal import Terminal

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

APP = "examples.fastapi.main:app"
CHANNEL = "news:board"
#: The example's users (examples/fastapi/main.py, and its login page's hint).
PASSWORDS = {"alice": "wonderland", "bob": "builder"}
WAIT_MS = 20_000
WAIT = 20.0
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def site() -> Iterator[AsgiProcess]:
    """The example on uvicorn, as `uvicorn main:app --app-dir examples/fastapi` runs it."""
    with running_asgi("uvicorn", APP) as running:
        yield running


@contextmanager
def signed_in(site: AsgiProcess, user: str) -> Iterator[httpx.Client]:
    """An HTTP client holding `user`'s session cookie, signed in through the login form."""
    with httpx.Client(base_url=site.url(""), timeout=WAIT) as client:
        answer = client.post("/login", data={"username": user, "password": PASSWORDS[user]})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/"
        yield client


def people(screen: str) -> list[str]:
    """The names in the terminal chat's people pane (right of its border), sessions aside."""
    rows = [line.split("│", 1)[1].strip() for line in screen.splitlines() if "│" in line]
    return [row.split(" (")[0] for row in rows if row and not row.startswith("people")]


def sign_in(page: Page, site: AsgiProcess, user: str) -> None:
    page.goto(site.url("/"))
    page.wait_for_url(site.url("/login"))  # redirected: nobody is signed in yet
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url("/"))


def test_what_the_fastapi_handler_publishes_appears_on_the_signed_in_page(
    site: AsgiProcess, browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1000, "height": 720})
    try:
        page = context.new_page()
        sign_in(page, site, "alice")
        expect(page.get_by_test_id("user")).to_have_text("alice")
        # Subscribed with alice's token: the status turns live once the subscribe is answered.
        expect(page.get_by_test_id("status")).to_have_text("live", timeout=WAIT_MS)
        expect(page.get_by_test_id("online")).to_have_text("Online now: alice.", timeout=WAIT_MS)

        # The browser's session cookie, on a POST from here: the handler publishes as alice.
        cookie = {entry["name"]: entry["value"] for entry in context.cookies()}["session"]
        text = "The office is closed on Friday."
        answer = httpx.post(
            site.url("/announce"), data={"text": text}, cookies={"session": cookie}, timeout=WAIT
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["channel"] == CHANNEL
        newest = page.get_by_test_id("message").first
        expect(newest.get_by_test_id("message-text")).to_have_text(text, timeout=WAIT_MS)
        expect(newest).to_contain_text("alice")

        # Another user's announcement (bob, signed in elsewhere), then the page's own form.
        with signed_in(site, "bob") as bob:
            said = "Release 2.4 is out: the changelog is on the wiki."
            assert bob.post("/announce", data={"text": said}).status_code == 200
        expect(page.get_by_test_id("message-text").first).to_have_text(said, timeout=WAIT_MS)
        page.get_by_label("Announcement").fill("Lunch is on the team today.")
        page.get_by_role("button", name="Announce").click()
        expect(page.get_by_test_id("message-text")).to_have_text(
            ["Lunch is on the team today.", said, text], timeout=WAIT_MS
        )
        # The form is reset once /announce answered.
        expect(page.get_by_label("Announcement")).to_have_value("", timeout=WAIT_MS)

        # The picture in examples/fastapi/README.md, refreshed on request only.
        target = DOCS if os.environ.get("PUSHWIRE_UPDATE_DOCS") == "1" else tmp_path
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.screenshot(path=str(target / "example-fastapi.png"))
    finally:
        context.close()


def test_hub_publish_in_a_fastapi_handler_reaches_a_pushwire_chat_terminal(
    site: AsgiProcess, tmux_socket: str
) -> None:
    with signed_in(site, "alice") as alice, signed_in(site, "bob") as bob:
        token = alice.get("/token")
        assert token.status_code == 200
        assert token.headers["cache-control"] == "no-store"
        assert jwt.decode(token.text, options={"verify_signature": False})["sub"] == "alice"
        chat = [sys.executable, "-m", "pushwire", "chat", site.url("/rt/pushwire")]
        terminal = Terminal(
            tmux_socket,
            "alice",
            [*chat, "--room", CHANNEL, "--nick", "alice", "--token", token.text],
        )
        terminal.wait_for(f"joined #{CHANNEL} over websocket", WAIT)
        # The server knows the terminal as the user of its token.
        terminal.wait_until(lambda screen: "alice" in people(screen), "alice among people", WAIT)
        text = "Fire drill at 3 pm, everyone out by the east stairs."
        assert bob.post("/announce", data={"text": text}).status_code == 200
        terminal.wait_for(f"bob: {text}", WAIT)

        # news:* is written by the server alone: what the terminal types is refused.
        terminal.type("may I post here?")
        terminal.wait_for("not sent:", WAIT)
        terminal.type("/quit")


def test_without_a_sign_in_there_is_no_page_no_token_and_no_connection(
    site: AsgiProcess, browser: Browser, tmux_socket: str
) -> None:
    anonymous = httpx.Client(base_url=site.url(""), timeout=WAIT)
    with anonymous:
        page = anonymous.get("/")
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        for answer in (anonymous.get("/token"), anonymous.post("/announce", data={"text": "x"})):
            assert answer.status_code == 401
            assert answer.json() == {"detail": "sign in first"}
        wrong = anonymous.post("/login", data={"username": "alice", "password": "builder"})
        assert wrong.status_code == 401
        assert "Unknown user or wrong password." in wrong.text
        assert "session" not in anonymous.cookies
        assert anonymous.get("/token").status_code == 401

    # A browser that has not signed in is sent to the login form and never loads the board.
    context = browser.new_context()
    try:
        view = context.new_page()
        view.goto(site.url("/"))
        assert view.url == site.url("/login")
        assert view.get_by_role("button", name="Sign in").is_visible()
    finally:
        context.close()

    # pushwire itself refuses a connection without a token, or with one the app did not sign,
    # with 4102 (docs/security.md "Codes of a refusal"): the v1 endpoint after the hello...
    endpoint = site.url("/rt/pushwire")
    forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, "x" * 32, "HS256")
    for token, reason in ((None, "a connection token is required"), (forged, "invalid token")):
        with pytest.raises(ClientClosed) as refused:
            pushwire_client.connect(endpoint, token=token, transports=["websocket"])
        assert refused.value.code == 4102
        assert refused.value.reason.startswith(reason)
    # ... and a raw WebSocket to the channel at once.
    raw = websocket(site.ws_url(f"/rt/ws/{CHANNEL}"), open_timeout=WAIT)
    with raw, pytest.raises(ConnectionClosed) as closed:
        raw.recv(timeout=WAIT)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        4102,
        "a connection token is required",
    )
    # A terminal given a forged token (in PUSHWIRE_TOKEN) says so, and gets nothing.
    chat = ["env", f"PUSHWIRE_TOKEN={forged}", sys.executable, "-m", "pushwire", "chat"]
    terminal = Terminal(
        tmux_socket, "mallory", [*chat, site.url("/rt/pushwire"), "--room", CHANNEL]
    )
    terminal.wait_for("connection failed: closed: 4102 invalid token", WAIT)

    # The same client with the token the app gives a signed-in user is welcomed.
    with signed_in(site, "bob") as bob:
        token = bob.get("/token").text
        with pushwire_client.connect(endpoint, token=token, transports=["websocket"]) as client:
            client.subscribe(CHANNEL)
            assert bob.post("/announce", data={"text": "welcome"}).status_code == 200
            received = client.recv(timeout=WAIT)
        # Signed out, the cookie gets no more tokens.
        signed_out = bob.post("/logout")
        assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/login")
        assert bob.get("/token").status_code == 401
    assert isinstance(received, Message)
    assert '"text": "welcome"' in str(received.data)
    terminal.type("/quit")
