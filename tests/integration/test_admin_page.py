"""The admin page (`/admin`) in real Chromium: it signs in with the API key only, shows the
clients by transport as they come, draws figures that arrive over pushwire itself, and
publishes through the HTTP API; at phone width it still fits."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest
from websockets.sync.client import connect as ws_connect

from tests.door_clients import RawSse
from tests.servers import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS: Final = 15_000
API_KEY: Final = "the admin page test's API key"

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=WAIT_MS)


@pytest.fixture
def admin_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory("--admin", "--admin-interval", "0.3", "--api-key", API_KEY)


def _page(browser: Browser, width: int, height: int) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, 1280, 900)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, 390, 844)


def _sign_in(page: Page, server: ServerProcess, key: str) -> None:
    page.goto(server.url("/admin"))
    page.get_by_test_id("credential").fill(key)
    page.get_by_test_id("login-button").click()


def _points(page: Page, chart: str) -> int:
    return int(page.get_by_test_id(chart).get_attribute("data-points") or "0")


def test_without_the_key_the_page_shows_nothing(page: Page, admin_server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(admin_server.host, admin_server.port, timeout=10)
    conn.request("POST", "/admin/session")
    assert conn.getresponse().status == 401
    conn.close()
    _sign_in(page, admin_server, "a wrong key")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong API key or token.")
    expect(page.get_by_test_id("dashboard")).to_be_hidden()
    expect(page.get_by_test_id("status")).to_have_text("signed out")


def test_the_dashboard_follows_the_server_live_and_publishes(
    page: Page, admin_server: ServerProcess, tmp_path: Path
) -> None:
    _sign_in(page, admin_server, API_KEY)
    expect(page.get_by_test_id("status")).to_have_text("live")
    expect(page.get_by_test_id("dashboard")).to_be_visible()
    # The page's own session is a WebSocket client: it counts itself.
    websockets = page.get_by_test_id("transport-websocket")
    expect(websockets).to_have_text("1")
    with (
        ws_connect(admin_server.ws_url("/ws/news?user=ann")) as ann,
        ws_connect(admin_server.ws_url("/ws/news?user=bob")) as bob,
        ws_connect(admin_server.ws_url("/ws/chat?user=cid")) as cid,
        RawSse(admin_server, "news", {"user": "dee"}) as dee,
    ):
        assert dee.status == 200
        expect(websockets).to_have_text("4")
        expect(page.get_by_test_id("transport-sse")).to_have_text("1")
        news = page.locator("tr[data-channel='news']")
        expect(news.get_by_test_id("subscribers")).to_have_text("3")
        expect(news).to_contain_text("ann")
        expect(news).to_contain_text("dee")
        # The charts get points over pushwire, one per set of figures.
        before = _points(page, "chart-messages")
        page.wait_for_function(
            "n => Number(document.querySelector('[data-testid=chart-messages]')"
            ".dataset.points) >= n + 2",
            arg=before,
        )
        assert page.locator("[data-testid=chart-messages] polyline").count() == 2
        # The publish box publishes through the API, with the key.
        page.get_by_test_id("publish-channel").fill("news")
        page.get_by_test_id("publish-data").fill("hello from the admin page")
        page.get_by_test_id("publish-button").click()
        assert ann.recv(timeout=10) == "hello from the admin page"
        expect(page.get_by_test_id("publish-result")).to_contain_text("Published to news")
        page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        bob.close()
        cid.close()
        expect(websockets).to_have_text("2")
    # The key went in a header only: not in the page's URL, not in the server's log.
    assert API_KEY not in page.url
    assert API_KEY not in b"".join(admin_server.output).decode()


def test_the_page_fits_a_phone(phone: Page, admin_server: ServerProcess, tmp_path: Path) -> None:
    _sign_in(phone, admin_server, API_KEY)
    expect(phone.get_by_test_id("transport-websocket")).to_have_text("1")
    phone.wait_for_function(
        "() => Number(document.querySelector('[data-testid=chart-sessions]').dataset.points) >= 2"
    )
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    phone.screenshot(path=str(tmp_path / "admin-phone.png"), full_page=True)


def test_a_reload_keeps_the_tab_signed_in_and_log_out_forgets_the_key(
    page: Page, admin_server: ServerProcess
) -> None:
    _sign_in(page, admin_server, API_KEY)
    expect(page.get_by_test_id("status")).to_have_text("live")
    page.reload()
    expect(page.get_by_test_id("status")).to_have_text("live")
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_test_id("login")).to_be_visible()


def test_the_page_renews_its_admin_token_on_the_same_connection(
    page: Page, server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory(
        "--admin", "--admin-interval", "0.3", "--admin-token-ttl", "4", "--api-key", API_KEY
    )
    _sign_in(page, server, API_KEY)
    expect(page.get_by_test_id("status")).to_have_text("live")
    # 40 sets of figures at 0.3 s: longer than the token's 4 s plus jwt_leeway's 5 s, when an
    # expired token would have closed the connection (4005).
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=chart-messages]').dataset.points) >= 40",
        timeout=60_000,
    )
    status = page.get_by_test_id("status")
    expect(status).to_have_text("live")
    assert status.get_attribute("data-drops") is None  # never dropped: refreshed in time
