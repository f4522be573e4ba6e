"""The chat page shows a room's past: on joining it and on reload, its last messages from the
server's history, in order, then live ones; a gap where history no longer reaches back."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.integration.chat_page import expect, join, messages, say, sign_in
from tests.servers import ServerFactory, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 10_000
#: What the page shows of a room's past (clients/js/demo/chat/constants.js HISTORY_ON_JOIN).
SHOWN = 50


OpenPage = Callable[[ServerProcess], "Page"]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """A fresh browser context (its own localStorage) on the chat page of a server."""
    contexts = []

    def open_on(server: ServerProcess) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url("/"))
        return page

    yield open_on
    for context in contexts:
        context.close()


def publish(server: ServerProcess, room: str, nick: str, text: str) -> None:
    """A chat message as the page writes it, published over the HTTP API."""
    body = json.dumps({"nick": nick, "text": text, "ts": 1_767_225_600_000}).encode()
    request = urllib.request.Request(server.url(f"/api/publish/{room}"), data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def texts(page: Page) -> list[str]:
    return messages(page).get_by_test_id("message-text").all_inner_texts()


def test_a_room_with_50_earlier_messages_shows_them_in_order_then_new_ones_and_after_a_reload(
    open_page: OpenPage, server: ServerProcess
) -> None:
    for number in range(1, 51):
        publish(server, "lobby", "bob", f"earlier {number}")
    page = open_page(server)
    sign_in(page, "alice")
    expect(messages(page)).to_have_count(50)
    assert texts(page) == [f"earlier {number}" for number in range(1, 51)]
    expect(messages(page).first).to_have_attribute("data-nick", "bob")
    publish(server, "lobby", "bob", "new one")
    say(page, "and mine")
    expect(messages(page)).to_have_count(52)
    assert texts(page)[-2:] == ["new one", "and mine"]
    expect(messages(page).last).to_have_class("message own")
    # A reload: the room's last 50, in order (the oldest two fall out), then new ones again.
    page.reload()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "open")
    expect(messages(page)).to_have_count(SHOWN)
    assert texts(page) == [f"earlier {number}" for number in range(3, 51)] + [
        "new one",
        "and mine",
    ]
    # Its own messages are still its own after the reload (the nickname is remembered).
    expect(messages(page).last).to_have_class("message own")
    publish(server, "lobby", "bob", "after the reload")
    expect(messages(page)).to_have_count(SHOWN + 1)
    assert texts(page)[-1] == "after the reload"
    assert page.get_by_test_id("notice").count() == 0


def test_a_room_joined_later_shows_its_past_and_the_gap_where_history_no_longer_reaches(
    open_page: OpenPage, server_factory: ServerFactory
) -> None:
    server = server_factory("--set", "history_size=20")
    for number in range(1, 36):
        publish(server, "kitchen", "carol", f"kitchen {number}")
    page = open_page(server)
    sign_in(page, "alice")
    expect(page.get_by_test_id("empty")).to_be_visible()  # the lobby has no past
    join(page, "kitchen")
    expect(messages(page)).to_have_count(20)
    assert texts(page) == [f"kitchen {number}" for number in range(16, 36)]
    # 50 asked for, 35 ever published, 20 kept: 15 could not be shown, and the page says so
    # above the messages.
    notice = page.get_by_test_id("notice")
    expect(notice).to_have_count(1)
    expect(notice).to_have_text(
        "15 earlier messages could not be shown: the server no longer keeps them."
    )
    items = page.locator("#messages > li")
    expect(items.first).to_have_attribute("data-testid", "notice")
    # Back to the lobby and to the kitchen again: its past once, not twice.
    join(page, "lobby")
    publish(server, "kitchen", "carol", "while away")
    join(page, "kitchen")
    expect(messages(page)).to_have_count(20)
    assert texts(page)[-1] == "while away"
    expect(notice).to_have_count(1)
