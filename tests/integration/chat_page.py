"""Driving the chat demo page (`/`) in Chromium through its own UI, as a person would: the
helpers the chat page's tests share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

WAIT_MS = 10_000
UNKNOWN = "\u2013"  # what the online count shows before presence says (an en dash)

# Without Playwright a module importing this is skipped (the browser fixture would skip each
# test).
expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=WAIT_MS)


def sign_in(page: Page, nick: str) -> None:
    """Answer the first-visit nickname form and wait until the page is connected."""
    expect(page.get_by_test_id("nick-overlay")).to_be_visible()
    page.get_by_test_id("nick-input").fill(nick)
    page.get_by_test_id("nick-input").press("Enter")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "open")
    # The room's presence snapshot lists us once the subscription is made: from then on no
    # message to the room can pass us by (a send before it would, and the test would race).
    expect(page.get_by_test_id("people").locator(f'li[data-user="{nick}"]')).to_be_visible()


def say(page: Page, text: str) -> None:
    """Type `text` in the composer and press Enter."""
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("message-input").press("Enter")


def join(page: Page, room: str) -> None:
    """Join `room` with the sidebar form and wait until presence counts this page in it."""
    if page.get_by_test_id("menu-button").is_visible():  # narrow: the sidebar is a drawer
        page.get_by_test_id("menu-button").click()
        expect(page.get_by_test_id("sidebar")).to_be_in_viewport(ratio=1)
    page.get_by_test_id("room-input").fill(room)
    page.get_by_test_id("room-join").click()
    expect(page.get_by_test_id("room-name")).to_have_text(room)
    expect(page.get_by_test_id("online-count")).not_to_have_text(UNKNOWN)


def messages(page: Page) -> Locator:
    return page.get_by_test_id("message")


def people(page: Page) -> Locator:
    """The names in the "people in the room" list (one's own marked "you")."""
    return page.get_by_test_id("people").get_by_test_id("person-name")
