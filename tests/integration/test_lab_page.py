"""The transport lab page (`/lab`) in real Chromium: it draws the committed lab.json, one bar
per transport in every chart, and the chat page links to it."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WAIT_MS = 10_000
DOCS = Path(__file__).resolve().parents[2] / "docs"
LAB_JSON = Path(__file__).resolve().parents[2] / "src" / "pushwire" / "static" / "lab.json"
METRICS = [
    "messages_per_s",
    "p50_ms",
    "requests_per_msg",
    "bytes_per_msg",
    "p99_ms",
    "cpu_ms_per_1000",
]

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=WAIT_MS)


def _get(server: ServerProcess, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(server.url(path), timeout=10) as response:
        return response.headers["Content-Type"], response.read()


@pytest.fixture
def lab() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LAB_JSON.read_text())
    return data


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        yield page
    finally:
        context.close()


def test_the_server_serves_the_lab_page_and_its_measured_figures(
    server: ServerProcess, lab: dict[str, Any]
) -> None:
    kind, body = _get(server, "/lab")
    assert kind == "text/html; charset=utf-8" and b"/static/lab.js" in body
    assert b"/static/logo.svg" in body  # the mark the chat page shows too, from one file
    kind, logo = _get(server, "/static/logo.svg")
    assert kind == "image/svg+xml" and logo.startswith(b"<svg")
    kind, body = _get(server, "/static/lab.json")
    assert kind == "application/json" and json.loads(body) == lab
    assert lab["format"] == "pushwire-lab/1"
    assert lab["command"].startswith("python -m bench") and lab["date"] and lab["versions"]
    names = [row["name"] for row in lab["transports"]]
    for wanted in ("websocket (raw)", "sse", "stream", "iframe", "longpoll", "polling", "tcp"):
        assert any(name.startswith(wanted) for name in names), (wanted, names)
    for row in lab["transports"]:
        assert set(METRICS) <= set(row["fanout"]), row


def test_the_lab_page_draws_one_bar_per_transport_in_every_chart(
    page: Page, server: ServerProcess, lab: dict[str, Any]
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url("/lab"))
    charts = page.get_by_test_id("charts")
    expect(charts).to_have_attribute("data-state", "ready")
    names = [row["name"] for row in lab["transports"]]
    count = len(names)
    assert page.get_by_test_id("chart").count() == len(METRICS)
    for metric in METRICS:
        chart = charts.locator(f'[data-metric="{metric}"]')
        bars = chart.locator("rect.bar")
        expect(bars).to_have_count(len(names))
        assert [bars.nth(i).get_attribute("data-transport") for i in range(len(names))] == names
        values = [
            float(bars.nth(i).get_attribute("data-value") or "nan") for i in range(len(names))
        ]
        assert values == [row["fanout"][metric] for row in lab["transports"]]
        # The longest bar belongs to the largest value; a zero value draws no bar.
        widths = [float(bars.nth(i).get_attribute("width") or "0") for i in range(count)]
        assert widths.index(max(widths)) == values.index(max(values))
        assert all(w == 0 for w, v in zip(widths, values, strict=True) if v == 0)
    expect(page.get_by_test_id("figures-row")).to_have_count(len(names))
    expect(page.get_by_test_id("provenance")).to_contain_text(lab["command"])
    assert errors == []


def test_the_lab_page_says_so_when_the_figures_cannot_be_loaded(
    page: Page, server: ServerProcess
) -> None:
    page.route("**/static/lab.json", lambda route: route.fulfill(status=404, body="no"))
    page.goto(server.url("/lab"))
    charts = page.get_by_test_id("charts")
    expect(charts).to_have_attribute("data-state", "error")
    expect(charts).to_contain_text("Could not load /static/lab.json: HTTP 404")


def test_the_chat_page_links_to_the_lab(page: Page, server: ServerProcess) -> None:
    page.goto(server.url("/"))
    link = page.get_by_test_id("lab-link")
    expect(link).to_have_attribute("href", "/lab")


def test_on_a_phone_the_figures_are_cards_that_fit_and_the_versions_read_once(
    browser: Browser, server: ServerProcess, lab: dict[str, Any], tmp_path: Path
) -> None:
    """At 390x844 no figure hides off to the side: each transport is a card of labelled values
    as wide as the screen. docs/lab-phone.png is refreshed with PUSHWIRE_UPDATE_DOCS=1."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url("/lab"))
        expect(page.get_by_test_id("charts")).to_have_attribute("data-state", "ready")
        rows = page.get_by_test_id("figures-row")
        expect(rows).to_have_count(len(lab["transports"]))
        table = page.get_by_test_id("figures-table")
        assert table.evaluate(
            "node => node.parentElement.scrollWidth <= node.parentElement.clientWidth"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        first = rows.first.locator("td").nth(1)
        assert first.evaluate("node => getComputedStyle(node, '::before').content") == (
            '"messages/s"'
        )
        provenance = page.get_by_test_id("provenance")
        expect(provenance).to_contain_text(lab["versions"]["python"])
        expect(provenance).not_to_contain_text("python Python")
        expect(provenance).to_contain_text(f"websockets {lab['versions']['websockets']}")
        target = DOCS if os.environ.get("PUSHWIRE_UPDATE_DOCS") == "1" else tmp_path
        # The screen a reader scrolls to: the heading and the first cards.
        page.locator(".figures h2").evaluate("node => node.scrollIntoView()")
        page.screenshot(path=str(target / "lab-phone.png"))
    finally:
        context.close()
