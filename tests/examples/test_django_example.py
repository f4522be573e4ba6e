"""examples/django, run as its README says (migrate, createsuperuser, uvicorn) in a temporary
folder: Chromium signs in through Django's login form and sees a notice it posts arrive over
pushwire on every open page, until signing out closes them; each door refuses whoever Django
did not sign in.

Sync only: the module's Chromium (Playwright's sync API) owns an event loop on this thread
while it runs, so the WebSocket and HTTP clients here are the blocking ones."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from pushwire.api import Client
from pushwire.errors import ApiKeyRefused
from tests.asgi_servers import ROOT, AsgiProcess, running_asgi
from tests.helpers import PUSHWIRE_V1

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXAMPLE: Final = ROOT / "examples" / "django"
DOCS: Final = ROOT / "docs"
CHANNEL: Final = "board:notices"
USER: Final = "alice"
PASSWORD: Final = "correct horse battery staple"
JWT_SECRET: Final = "the django example test's token secret, long enough"
API_KEY: Final = "the-django-example-tests-api-key"
#: What the example reads from the environment (README.md): production settings, secrets
#: given, the database in the test's folder.
SETTINGS: Final = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "the django example test's secret key, used for nothing else",
    "PUSHWIRE_JWT_SECRET": JWT_SECRET,
    "PUSHWIRE_API_KEY": API_KEY,
}
WAIT: Final = 15.0
WAIT_MS: Final = 15_000


def manage(env: dict[str, str], *args: str) -> None:
    """`python manage.py ARGS` in the example's folder, as the README runs it."""
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    given = dict(os.environ, **env, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=given,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiProcess]:
    """The example on uvicorn, with a fresh database holding one user."""
    env = {**SETTINGS, "DJANGO_DB": str(tmp_path_factory.mktemp("django") / "db.sqlite3")}
    manage(env, "migrate", "--noinput")
    manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        "createsuperuser",
        "--noinput",
        "--username",
        USER,
        "--email",
        "alice@example.com",
    )
    with running_asgi("uvicorn", app="mysite.asgi:application", cwd=EXAMPLE, env=env) as running:
        yield running


def sign_in(page: Page, site: AsgiProcess) -> None:
    """Open the board, sign in through Django's login form, and wait for pushwire."""
    page.goto(site.url("/"))
    assert re.search(r"/accounts/login/\?next=/$", page.url), page.url
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url("/"))
    page.locator("#state", has_text="connected").wait_for()


def post(page: Page, text: str) -> None:
    page.get_by_label("notice").fill(text)
    page.get_by_role("button", name="Post").click()


def test_a_notice_posted_through_django_reaches_every_open_page(
    browser: Browser, site: AsgiProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 860, "height": 440})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        sign_in(page, site)
        other = context.new_page()  # a second tab of the same user: the same session cookie
        other.set_default_timeout(WAIT_MS)
        other.goto(site.url("/"))
        other.locator("#state", has_text="connected").wait_for()
        for tab in (page, other):
            expect(tab.locator("#here")).to_have_text("2")
            expect(tab.locator("#people")).to_have_text(f"({USER})")

        text = "Standup moves to 10:30 today."
        post(page, text)
        for tab in (page, other):
            expect(tab.locator("#notices li .text")).to_have_text([text])
            expect(tab.locator("#notices li .meta")).to_contain_text([USER])
        expect(page.get_by_label("notice")).to_have_value("")
        expect(page.locator("#problem")).to_be_hidden()

        post(other, "The build is green again.")
        post(page, "Release notes are in the wiki.")
        later = ["Release notes are in the wiki.", "The build is green again.", text]
        for tab in (page, other):
            expect(tab.locator("#notices li .text")).to_have_text(later)
        other.close()
        expect(page.locator("#here")).to_have_text("1")
        expect(page.locator("#transport")).to_have_text("websocket")
        # The picture in the docs is refreshed on request (PUSHWIRE_UPDATE_DOCS=1).
        target = DOCS if os.environ.get("PUSHWIRE_UPDATE_DOCS") == "1" else tmp_path
        page.screenshot(path=str(target / "example-django.png"))

        # A notice is shown as text, never as HTML.
        markup = "<b>bold?</b> <img src=x>"
        post(page, markup)
        expect(page.locator("#notices li .text").first).to_have_text(markup)
        expect(page.locator("#notices b, #notices img")).to_have_count(0)

        # A page opened later gets the last notices first (rewind), then the new ones.
        late = context.new_page()
        late.set_default_timeout(WAIT_MS)
        late.goto(site.url("/"))
        expect(late.locator("#notices li .text")).to_have_text([markup, *later])
        late.locator("#state", has_text="connected").wait_for()

        # Signing out closes the user's connections: the page in the other tab stops.
        page.get_by_role("button", name="sign out").click()
        page.wait_for_url(re.compile(r"/accounts/login/$"))
        expect(late.locator("#state")).to_have_text("closed (4101: disconnected by the server)")
    finally:
        context.close()


# -- refusals ---------------------------------------------------------------------------------


def form_token(html: str) -> str:
    """The CSRF token of the first form of a page Django rendered."""
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found is not None, html[:300]
    return found.group(1)


@contextmanager
def signed_in(site: AsgiProcess) -> Iterator[tuple[httpx.Client, str]]:
    """An HTTP client with alice's session cookie, and the board's CSRF token."""
    with httpx.Client(base_url=site.url(""), timeout=WAIT) as http:
        login = http.get("/accounts/login/")
        answer = http.post(
            "/accounts/login/",
            data={
                "username": USER,
                "password": PASSWORD,
                "csrfmiddlewaretoken": form_token(login.text),
            },
        )
        assert (answer.status_code, answer.headers["location"]) == (302, "/")
        board = http.get("/")
        assert board.status_code == 200
        yield http, form_token(board.text)


def published(site: AsgiProcess) -> int:
    """How many notices the board's channel has had."""
    with Client(site.url("/rt"), api_key=API_KEY) as api:
        return api.history(CHANNEL).offset


def test_anonymous_visitors_get_the_login_page_and_no_token(site: AsgiProcess) -> None:
    with httpx.Client(base_url=site.url(""), timeout=WAIT) as http:
        board = http.get("/")
        token = http.get("/push-token")
    assert (board.status_code, board.headers["location"]) == (302, "/accounts/login/?next=/")
    assert (token.status_code, token.text) == (401, "sign in first\n")


def test_posting_needs_a_signed_in_user_and_the_csrf_token(site: AsgiProcess) -> None:
    before = published(site)
    with httpx.Client(base_url=site.url(""), timeout=WAIT) as anonymous:
        csrf = form_token(anonymous.get("/accounts/login/").text)
        refused = anonymous.post("/notices", data={"text": "hi", "csrfmiddlewaretoken": csrf})
    assert (refused.status_code, refused.headers["location"]) == (
        302,
        "/accounts/login/?next=/notices",
    )
    with signed_in(site) as (http, csrf):
        forged = http.post("/notices", data={"text": "from another site"})
        empty = http.post(
            "/notices",
            data={"text": "  ", "csrfmiddlewaretoken": csrf},
            headers={"Accept": "application/json"},
        )
        assert published(site) == before  # none of them was published
        allowed = http.post(
            "/notices",
            data={"text": "hello", "csrfmiddlewaretoken": csrf},
            headers={"Accept": "application/json"},
        )
    assert forged.status_code == 403  # Django's CSRF check
    assert empty.status_code == 400
    assert allowed.status_code == 200
    assert allowed.json() == {"offset": before + 1} == {"offset": published(site)}


def closed_with(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """The envelopes received until the server closed the connection, and its close code."""
    envelopes = []
    try:
        while True:
            envelopes.append(json.loads(ws.recv(timeout=WAIT)))
    except ConnectionClosed as closed:
        return envelopes, closed.rcvd.code if closed.rcvd else None


@contextmanager
def hello(site: AsgiProcess, **fields: Any) -> Iterator[ClientConnection]:
    """A pushwire.v1 WebSocket to the site's /rt/pushwire that said `hello` with `fields`."""
    url = site.ws_url("/rt/pushwire")
    with ws_connect(url, subprotocols=PUSHWIRE_V1, open_timeout=WAIT) as ws:
        ws.send(json.dumps({"type": "hello", **fields}))
        yield ws


def next_envelope(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        envelope: dict[str, Any] = json.loads(ws.recv(timeout=WAIT))
        if envelope["type"] == kind:
            return envelope


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"user": USER},  # a claim is no credential
        {"token": "not-a-jwt"},
        # alice's claims, signed with another key
        {"token": jwt.encode({"sub": "1", "exp": time.time() + 60}, "a" * 32, "HS256")},
    ],
    ids=["no token", "a claimed user", "garbage", "another key"],
)
def test_a_websocket_without_a_token_the_site_signed_is_closed_4102(
    site: AsgiProcess, fields: dict[str, str]
) -> None:
    with hello(site, **fields) as ws:
        envelopes, code = closed_with(ws)
    assert [envelope["type"] for envelope in envelopes] == ["error"]
    assert envelopes[0]["code"] == "unauthorized"
    assert code == 4102


def test_the_token_of_a_signed_in_user_reads_the_board_but_cannot_write_it(
    site: AsgiProcess,
) -> None:
    with signed_in(site) as (http, _):
        token = http.get("/push-token")
    assert token.status_code == 200
    with hello(site, token=token.text) as ws:
        welcome = next_envelope(ws, "welcome")
        ws.send(json.dumps({"type": "subscribe", "id": 1, "channel": CHANNEL}))
        subscribed = next_envelope(ws, "subscribed")
        ws.send(json.dumps({"type": "publish", "id": 2, "channel": CHANNEL, "data": "x"}))
        refused = next_envelope(ws, "error")
        ws.send(json.dumps({"type": "subscribe", "id": 3, "channel": "elsewhere"}))
        unknown = next_envelope(ws, "error")
    assert welcome["user"] == "1"  # the Django user's id
    assert subscribed["id"] == 1
    assert (refused["id"], refused["code"]) == (2, "forbidden")  # notices come from Django
    assert (unknown["id"], unknown["code"]) == (3, "forbidden")  # not a namespace of the site


def test_the_http_api_needs_the_api_key(site: AsgiProcess) -> None:
    path = site.url(f"/rt/api/publish/{CHANNEL}")
    without = httpx.post(path, content=b"x", timeout=WAIT)
    wrong = httpx.post(path, content=b"x", headers={"Authorization": "Bearer no"}, timeout=WAIT)
    assert (without.status_code, wrong.status_code) == (401, 401)
    with (
        Client(site.url("/rt"), api_key="not the key", retries=0) as api,
        pytest.raises(ApiKeyRefused),
    ):
        api.publish(CHANNEL, "x")
