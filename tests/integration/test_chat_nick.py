"""A nickname changed in the terminal chat is seen by everyone in the room: in another
terminal's people pane and on a chat page in Chromium, as a page's own nick change is."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.integration.chat_page import expect, people, say, sign_in
from tests.servers import ServerProcess
from tests.tmux_terminal import Terminal

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(server.url("/"))
        yield page
    finally:
        context.close()


def pane(screen: str) -> list[str]:
    """The names in a terminal's people pane (right of the border)."""
    return [line.split("│", 1)[1].strip() for line in screen.splitlines() if "│" in line]


def test_a_nick_changed_in_a_terminal_shows_in_another_terminal_and_on_a_page(
    server: ServerProcess, page: Page, tmux_socket: str
) -> None:
    sign_in(page, "dora")
    chat = [sys.executable, "-m", "pushwire", "chat", server.url()]
    carol = Terminal(tmux_socket, "carol", [*chat, "--nick", "carol"])
    carol.wait_for("joined #lobby over websocket")
    alice = Terminal(tmux_socket, "alice", [*chat, "--nick", "alice", "--transport", "sse"])
    alice.wait_for("people (3)")
    expect(people(page)).to_have_count(3)
    assert "carol" in pane(alice.screen())

    carol.type("/nick caroline")
    carol.wait_for("you are now caroline (was carol)")
    # The others see carol leave and caroline come: the people list follows the name.
    alice.wait_for("caroline joined #lobby")
    screen = alice.wait_until(
        lambda screen: (
            {"caroline", "people (3)"} <= set(pane(screen)) and "carol" not in pane(screen)
        ),
        "caroline in place of carol in the people pane",
    )
    assert "carol left #lobby" in screen
    expect(page.get_by_test_id("people").locator('li[data-user="caroline"]')).to_be_visible()
    expect(page.get_by_test_id("people").locator('li[data-user="carol"]')).to_have_count(0)
    expect(people(page)).to_have_count(3)
    # And caroline's messages go out under the new name, in the terminal and on the page.
    carol.type("hello as caroline")
    alice.wait_for("caroline: hello as caroline")
    expect(page.get_by_test_id("message").last).to_have_attribute("data-nick", "caroline")
    # The page's own change works the same way, and the terminal sees it.
    page.get_by_test_id("change-nick").click()
    page.get_by_test_id("nick-input").fill("dorothy")
    page.get_by_test_id("nick-input").press("Enter")
    alice.wait_for("dorothy joined #lobby")
    say(page, "renamed too")
    carol.wait_for("dorothy: renamed too")
    carol.type("/quit")
    alice.type("/quit")
