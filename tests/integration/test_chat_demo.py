"""The chat demo page (`/`) in real Chromium: two people in separate browser contexts chat
through a real pushwire server, over the page's own UI only (no calls into its script)."""

from __future__ import annotations

import os
import re
import struct
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.chat_page import WAIT_MS, expect, join, messages, people, say, sign_in
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import TcpClient

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DOCS = Path(__file__).resolve().parents[2] / "docs"

OpenChat = Callable[..., "Page"]
OWN = re.compile(r"\bown\b")
HTTP_TRANSPORTS = ("sse", "stream", "iframe", "longpoll", "polling")


def png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """A valid RGB PNG, pixel by pixel: a real image for the page to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def gradient(x: int, y: int) -> tuple[int, int, int]:
    return (80 + x, 70 + y // 2, 230 - x // 2)


@pytest.fixture
def open_chat(browser: Browser, server: ServerProcess) -> Iterator[OpenChat]:
    """Open the chat page in a fresh browser context (its own localStorage) as `nick`."""
    contexts = []

    def open_page(
        nick: str | None,
        *,
        viewport: tuple[int, int] = (1280, 800),
        target: ServerProcess = server,
        transport: str | None = None,
    ) -> Page:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(target.url("/"))
        if transport is not None:
            page.get_by_test_id("transport-select").select_option(transport)
        if nick is not None:
            sign_in(page, nick)
        return page

    yield open_page
    for context in contexts:
        context.close()


def skip_unless_client_has(page: Page, *transports: str) -> None:
    """Skip when this pushwire.js has none of `transports` (they land one by one)."""
    if not page.evaluate("names => names.some(n => n in Pushwire.transports)", transports):
        pytest.skip(f"pushwire.js has no {' or '.join(transports)} transport yet")


def test_two_people_in_one_room_see_each_others_messages_and_count_two_online(
    open_chat: OpenChat,
) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob")
    for page in (alice, bob):
        expect(page.get_by_test_id("online-count")).to_have_text("2")
        expect(page.get_by_test_id("transport")).to_have_text("websocket")
        expect(page.get_by_test_id("room-name")).to_have_text("lobby")

    say(alice, "hello bob")
    for page in (alice, bob):
        expect(messages(page)).to_have_count(1)
        expect(messages(page).first.get_by_test_id("message-text")).to_have_text("hello bob")
        expect(messages(page).first.get_by_test_id("message-nick")).to_have_text("alice")
        expect(messages(page).first.get_by_test_id("message-time")).to_have_text(
            re.compile(r"^\d{1,2}:\d{2}")
        )
    expect(messages(alice).first).to_have_class(OWN)
    expect(messages(bob).first).not_to_have_class(OWN)

    say(bob, "hi alice")
    for page in (alice, bob):
        expect(messages(page)).to_have_count(2)
        expect(messages(page).nth(1).get_by_test_id("message-text")).to_have_text("hi alice")
        expect(messages(page).nth(1)).to_have_attribute("data-nick", "bob")
    expect(messages(bob).nth(1)).to_have_class(OWN)
    expect(bob.get_by_test_id("message-input")).to_have_value("")

    bob.close()
    expect(alice.get_by_test_id("online-count")).to_have_text("1")


def test_the_people_in_the_room_are_listed_and_follow_joins_and_leaves(
    open_chat: OpenChat,
) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob", transport="longpoll")
    for page in (alice, bob):
        expect(people(page)).to_have_count(2)
        expect(page.get_by_test_id("people-count")).to_have_text("· 2")
    # Oneself first, marked; then the others by name, with the transport they came by.
    expect(people(alice)).to_have_text([re.compile(r"^alice\s*you$"), "bob"])
    expect(alice.get_by_test_id("person-via").nth(1)).to_have_text("longpoll")
    expect(people(bob)).to_have_text([re.compile(r"^bob\s*you$"), "alice"])
    expect(bob.get_by_test_id("person-via").nth(1)).to_have_text("websocket")

    # Bob opens a second tab: still one bob, with two sessions.
    bob_again = open_chat("bob")
    expect(alice.locator('[data-user="bob"]')).to_contain_text("2 tabs")
    expect(alice.get_by_test_id("online-count")).to_have_text("3")
    bob_again.close()
    expect(alice.locator('[data-user="bob"]')).not_to_contain_text("tabs")

    # Carol arrives and leaves for another room: the list follows.
    carol = open_chat("carol")
    expect(people(alice)).to_have_count(3)
    expect(alice.locator('[data-user="carol"]')).to_be_visible()
    join(carol, "design")
    expect(people(alice)).to_have_count(2)
    expect(people(carol)).to_have_text([re.compile(r"^carol\s*you$")])
    bob.close()
    expect(people(alice)).to_have_text([re.compile(r"^alice\s*you$")])


@pytest.mark.parametrize("transport", ["websocket", *HTTP_TRANSPORTS])
def test_a_conversation_over_each_transport_chosen_in_the_page(
    open_chat: OpenChat, transport: str
) -> None:
    alice = open_chat(None, transport=transport)
    skip_unless_client_has(alice, transport)
    sign_in(alice, "alice")
    bob = open_chat("bob", transport=transport)
    for page in (alice, bob):
        expect(page.get_by_test_id("transport")).to_have_text(transport)
        expect(page.get_by_test_id("online-count")).to_have_text("2")
    say(alice, f"over {transport}")
    say(bob, "é ü 中文 and back")
    image = png(8, 8, gradient)
    bob.get_by_test_id("file-input").set_input_files(
        {"name": "tiny.png", "mimeType": "image/png", "buffer": image}
    )
    for page in (alice, bob):
        expect(messages(page)).to_have_count(3)
        expect(messages(page).nth(0).get_by_test_id("message-text")).to_have_text(
            f"over {transport}"
        )
        expect(messages(page).nth(1).get_by_test_id("message-text")).to_have_text(
            "é ü 中文 and back"
        )
        expect(messages(page).nth(2)).to_have_attribute("data-kind", "image")
        expect(messages(page).nth(2)).to_have_attribute("data-bytes", str(len(image)))


def test_the_send_button_sends_too_and_blank_messages_are_not_sent(open_chat: OpenChat) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob")
    alice.get_by_test_id("message-input").fill("   ")
    alice.get_by_test_id("message-input").press("Enter")
    alice.get_by_test_id("message-input").fill("line one")
    alice.get_by_test_id("message-input").press("Shift+Enter")
    alice.get_by_test_id("message-input").type("line two")
    alice.get_by_test_id("send-button").click()
    expect(messages(bob)).to_have_count(1)
    expect(messages(bob).first.get_by_test_id("message-text")).to_have_text("line one\nline two")


def test_switching_rooms_isolates_their_messages(open_chat: OpenChat) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob")
    carol = open_chat("carol")
    expect(alice.get_by_test_id("online-count")).to_have_text("3")

    join(alice, "kitchen")
    join(bob, "kitchen")
    expect(alice.get_by_test_id("online-count")).to_have_text("2")
    expect(carol.get_by_test_id("online-count")).to_have_text("1")
    expect(alice.get_by_test_id("room")).to_have_count(2)

    say(carol, "lobby only")
    say(alice, "kitchen only")
    expect(messages(bob)).to_have_count(1)
    expect(messages(bob).first.get_by_test_id("message-text")).to_have_text("kitchen only")
    expect(messages(carol)).to_have_count(1)
    expect(messages(carol).first.get_by_test_id("message-text")).to_have_text("lobby only")
    # Everything published so far has arrived where it belongs: carol's own lobby message
    # came back to her, so nothing of the kitchen is still on its way to the lobby.
    expect(messages(alice)).to_have_count(1)

    # Back in the lobby, bob no longer gets the kitchen; the lobby is live again, and shows
    # what was said there meanwhile (its past, from the server's history).
    bob.get_by_test_id("room").filter(has_text="lobby").click()
    expect(bob.get_by_test_id("room-name")).to_have_text("lobby")
    expect(carol.get_by_test_id("online-count")).to_have_text("2")
    expect(alice.get_by_test_id("online-count")).to_have_text("1")
    say(alice, "anyone in the kitchen?")
    say(carol, "welcome back bob")
    expect(messages(bob)).to_have_count(2)
    expect(messages(bob).get_by_test_id("message-text")).to_have_text(
        ["lobby only", "welcome back bob"]
    )
    expect(messages(alice)).to_have_count(2)
    expect(messages(carol)).to_have_count(2)
    expect(messages(carol).nth(1).get_by_test_id("message-text")).to_have_text("welcome back bob")


def test_an_image_sent_as_binary_appears_as_an_image_on_the_other_page(
    open_chat: OpenChat,
) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob")
    image = png(48, 32, gradient)
    alice.get_by_test_id("file-input").set_input_files(
        {"name": "dot.png", "mimeType": "image/png", "buffer": image}
    )
    for page in (alice, bob):
        item = messages(page).first
        expect(item).to_have_attribute("data-kind", "image")
        expect(item).to_have_attribute("data-bytes", str(len(image)))
        expect(item).to_have_attribute("data-nick", "alice")
        picture = item.get_by_test_id("message-image")
        expect(picture).to_have_attribute("alt", "dot.png")
        picture.evaluate("img => img.decode()")
        assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [48, 32]
        # The bytes that arrived are the bytes that were sent.
        received = page.evaluate(
            "async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))",
            picture.get_attribute("src"),
        )
        assert bytes(received) == image
    expect(messages(bob)).to_have_count(1)


def test_a_binary_file_that_is_not_an_image_shows_its_size(open_chat: OpenChat) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob")
    alice.get_by_test_id("file-input").set_input_files(
        {"name": "blob.bin", "mimeType": "application/octet-stream", "buffer": bytes(range(7))}
    )
    item = messages(bob).first
    expect(item).to_have_attribute("data-kind", "binary")
    expect(item.get_by_test_id("message-binary")).to_have_text("binary 7 bytes")
    expect(item).to_have_attribute("data-nick", "alice")


def test_untrusted_text_is_shown_as_text_never_as_markup(open_chat: OpenChat) -> None:
    alice = open_chat("<b>alice</b>")
    bob = open_chat("bob")
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    say(alice, hostile)
    item = messages(bob).first
    expect(item.get_by_test_id("message-text")).to_have_text(hostile)
    expect(item.get_by_test_id("message-nick")).to_have_text("<b>alice</b>")
    assert item.locator("img, script, b").count() == 0
    assert bob.evaluate("window.pwned") is None


def test_messages_published_over_http_show_up_and_a_room_keeps_its_last_500(
    open_chat: OpenChat, server: ServerProcess
) -> None:
    page = open_chat("alice")
    for number in range(505):
        request = urllib.request.Request(
            server.url("/api/publish/lobby"), data=f"message {number}".encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    expect(messages(page).last.get_by_test_id("message-text")).to_have_text("message 504")
    expect(messages(page)).to_have_count(500)
    expect(messages(page).first.get_by_test_id("message-text")).to_have_text("message 5")
    expect(messages(page).first).to_have_attribute("data-nick", "anonymous")


def test_the_nickname_is_asked_once_and_kept_in_local_storage(open_chat: OpenChat) -> None:
    page = open_chat("dora")
    expect(page.get_by_test_id("me-nick")).to_have_text("dora")
    page.reload()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("nick-overlay")).to_be_hidden()
    expect(page.get_by_test_id("me-nick")).to_have_text("dora")
    assert page.evaluate("window.pushwireChat.pw.user") == "dora"

    page.get_by_test_id("change-nick").click()
    page.get_by_test_id("nick-input").fill("dora2")
    page.get_by_test_id("nick-submit").click()
    expect(page.get_by_test_id("me-nick")).to_have_text("dora2")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "open")
    say(page, "renamed")
    expect(messages(page).first).to_have_attribute("data-nick", "dora2")


def test_a_dropped_connection_shows_reconnecting_then_connected(open_chat: OpenChat) -> None:
    alice = open_chat("alice")
    bob = open_chat("bob")
    alice.evaluate(
        """() => {
          window.states = [];
          const status = document.querySelector('[data-testid=status]');
          new MutationObserver(() => states.push(status.dataset.state))
            .observe(status, {attributes: true, attributeFilter: ['data-state']});
        }"""
    )
    alice.evaluate("window.pushwireChat.pw._debugDropConnection(4000)")
    alice.wait_for_function("states[0] === 'reconnecting' && states.at(-1) === 'open'")
    expect(alice.get_by_test_id("status")).to_have_text("Connected")
    say(bob, "still there?")
    expect(messages(alice)).to_have_count(1)
    expect(alice.get_by_test_id("online-count")).to_have_text("2")


def test_a_transport_that_cannot_connect_shows_a_clear_error_not_a_broken_page(
    open_chat: OpenChat, server_factory: ServerFactory
) -> None:
    blocked = server_factory("--no-websocket")
    page = open_chat(None, target=blocked)
    page.get_by_test_id("transport-select").select_option("websocket")
    page.get_by_test_id("nick-input").fill("erin")
    page.get_by_test_id("nick-input").press("Enter")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error")
    expect(page.get_by_test_id("status")).to_have_text("Connection failed")
    expect(page.get_by_test_id("banner")).to_contain_text("Could not connect over websocket")
    # The page still works: the retry button tries again, and fails the same way.
    page.get_by_test_id("retry").click()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error")
    page.get_by_test_id("room-input").fill("elsewhere")
    page.get_by_test_id("room-join").click()
    expect(page.get_by_test_id("room-name")).to_have_text("elsewhere")


def test_where_websocket_is_refused_the_page_falls_back_and_says_to_what(
    open_chat: OpenChat, server_factory: ServerFactory
) -> None:
    blocked = server_factory("--no-websocket")
    alice = open_chat(None, target=blocked)
    skip_unless_client_has(alice, *HTTP_TRANSPORTS)
    sign_in(alice, "alice")
    bob = open_chat("bob", target=blocked)
    for page in (alice, bob):
        expect(page.get_by_test_id("transport")).to_have_text(
            re.compile(f"^({'|'.join(HTTP_TRANSPORTS)})$")
        )
        expect(page.get_by_test_id("online-count")).to_have_text("2")
    say(bob, "no websocket needed")
    expect(messages(alice).first.get_by_test_id("message-text")).to_have_text("no websocket needed")


def test_screenshots_of_a_conversation(open_chat: OpenChat, tmp_path: Path) -> None:
    """docs/chat-demo.png at 1280x800 and docs/chat-demo-phone.png at 390x844."""
    alice = open_chat("alice")
    bob = open_chat("bob", viewport=(390, 844))
    join(alice, "design")
    join(bob, "design")
    join(alice, "lobby")
    join(bob, "lobby")
    script = [
        (alice, "Morning! Is the new build up?"),
        (bob, "Yes — deployed 5 minutes ago. Pushes arrive over WebSocket now."),
        (bob, "Try the transport menu on the left."),
        (alice, "Works here. Sending you the chart from the standup."),
    ]
    for count, (page, text) in enumerate(script, 1):
        say(page, text)
        expect(messages(alice)).to_have_count(count)
    alice.get_by_test_id("file-input").set_input_files(
        {"name": "latency.png", "mimeType": "image/png", "buffer": png(160, 90, chart)}
    )
    expect(messages(bob)).to_have_count(len(script) + 1)
    say(bob, "Nice, p99 under 5 ms. Shipping it.")
    for page in (alice, bob):
        expect(messages(page)).to_have_count(len(script) + 2)
        expect(page.get_by_test_id("online-count")).to_have_text("2")
        expect(people(page)).to_have_count(2)
        page.get_by_test_id("message-image").evaluate("img => img.decode()")
        page.evaluate("document.activeElement && document.activeElement.blur()")
    DOCS.mkdir(exist_ok=True)
    # The picture in the docs is refreshed on request (PUSHWIRE_UPDATE_DOCS=1), so that a test
    # run leaves the working tree as it found it.
    target = DOCS if os.environ.get("PUSHWIRE_UPDATE_DOCS") == "1" else tmp_path
    alice.screenshot(path=str(target / "chat-demo.png"))
    # The closed drawer casts no shadow: its blur would show as a grey band down the left edge.
    assert bob.get_by_test_id("sidebar").evaluate("node => getComputedStyle(node).boxShadow") == (
        "none"
    )
    bob.screenshot(path=str(target / "chat-demo-phone.png"))
    bob.get_by_test_id("menu-button").click()
    expect(bob.get_by_test_id("sidebar")).to_be_in_viewport(ratio=1)
    assert bob.get_by_test_id("sidebar").evaluate("node => getComputedStyle(node).boxShadow") != (
        "none"
    )
    bob.screenshot(path=str(tmp_path / "chat-demo-narrow-drawer.png"))
    assert (target / "chat-demo.png").stat().st_size > 10_000


def chart(x: int, y: int) -> tuple[int, int, int]:
    """A small bar chart: bars of growing height on a light background."""
    bar = x // 20
    top = 80 - (bar * 9 + 12)
    if x % 20 >= 4 and y >= top and y < 84:
        return (99 - bar * 4, 102 + bar * 6, 241)
    if y == 84:
        return (180, 184, 200)
    return (248, 249, 252)


def test_a_tcp_program_and_a_browser_on_the_chat_page_see_each_other(
    open_chat: OpenChat, server_factory: ServerFactory
) -> None:
    import json
    import time

    server = server_factory("--tcp-port", "0")
    page = open_chat("mei", target=server)
    desk = TcpClient(server)
    desk.hello(user="desk")
    desk.send({"type": "subscribe", "id": 1, "channel": "lobby"})
    desk.next("subscribed")
    note = {"nick": "desk", "text": "hello from a desktop program", "ts": int(time.time() * 1000)}
    desk.send({"type": "publish", "channel": "lobby", "data": json.dumps(note)})
    expect(messages(page).last).to_contain_text("hello from a desktop program")
    expect(messages(page).last).to_have_attribute("data-nick", "desk")
    say(page, "hello back from the browser")
    while True:
        message = json.loads(desk.next("message")["data"])
        if message["nick"] == "mei":
            break
    assert message["text"] == "hello back from the browser"


def test_an_insecure_server_says_so_on_the_chat_page_and_a_default_one_does_not(
    open_chat: OpenChat, server: ServerProcess, server_factory: ServerFactory, tmp_path: Path
) -> None:
    insecure = server_factory("--insecure")
    page = open_chat("ana", target=insecure)
    notice = page.get_by_test_id("open-demo")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Open demo: this server checks nobody")
    page.screenshot(path=str(tmp_path / "chat-open-demo.png"))
    plain = open_chat("ben", target=server)
    expect(plain.get_by_test_id("status")).to_have_attribute("data-state", "open")
    assert plain.get_by_test_id("open-demo").count() == 0
