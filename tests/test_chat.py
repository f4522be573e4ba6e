"""The terminal chat: its model without a terminal, and the real program driven in tmux."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from pushwire.chat import HISTORY_ON_JOIN, Action, ChatModel, wrap
from pushwire.client import Gap
from tests.servers import ServerFactory, ServerProcess
from tests.tmux_terminal import Terminal


def test_plain_text_is_published_as_the_browser_demos_json() -> None:
    model = ChatModel("alice", "lobby", "websocket")
    action = model.submit("  hello  ")
    assert action.kind == "publish"
    assert json.loads(action.argument)["nick"] == "alice"
    assert json.loads(action.argument)["text"] == "hello"


def test_commands_become_actions_or_lines() -> None:
    model = ChatModel("alice", "lobby", "websocket")
    assert model.submit("/join #kitchen") == Action("join", "kitchen")
    assert model.submit("/transport longpoll") == Action("transport", "longpoll")
    assert model.submit("/quit") == Action("quit")
    assert model.submit("") == Action("none")
    assert model.submit("/nick bob") == Action("nick", "bob")
    assert model.nick == "bob"
    assert model.submit("/nick bob") == Action("none")  # the same name: nothing to do
    assert model.submit("/transport tcp") == Action("none")  # not on an http:// URL
    assert model.lines[-1].kind == "error"
    assert "unknown or incomplete command: /transport tcp" in model.lines[-1].text


def test_incoming_messages_are_shown_by_room_and_author() -> None:
    model = ChatModel("alice", "lobby", "websocket")
    model.received(json.dumps({"nick": "bob", "text": "hi", "ts": 0}), "lobby")
    model.received(json.dumps({"nick": "alice", "text": "mine", "ts": 0}), "lobby")
    model.received(json.dumps({"nick": "carol", "text": "elsewhere", "ts": 0}), "kitchen")
    model.received("not json", "lobby")
    model.received(b"\x00\x01", "lobby")
    shown = [(line.kind, line.nick, line.text) for line in model.lines]
    assert shown == [
        ("message", "bob", "hi"),
        ("own", "alice", "mine"),
        ("message", "?", "not json"),
        ("message", "?", "[binary, 2 bytes]"),
    ]


def test_a_message_shown_already_is_not_shown_again_when_its_room_is_joined_again() -> None:
    model = ChatModel("alice", "lobby", "websocket")
    hello = json.dumps({"nick": "bob", "text": "hello", "ts": 0})
    model.received(hello, "lobby", ("e1", 7))
    model.received(hello, "lobby", ("e1", 7))  # the room's past, after a /join or a new nick
    model.received(hello, "lobby", ("e2", 7))  # another epoch: another message
    assert [line.text for line in model.lines] == ["hello", "hello"]


def test_a_gap_in_the_rooms_past_says_how_many_messages_are_not_shown() -> None:
    model = ChatModel("alice", "lobby", "websocket")
    model.lost(Gap("lobby", "e1", 3, "e1", 18))
    model.lost(Gap("lobby", "e1", 3, "e2", 2))
    model.lost(Gap("kitchen", "e1", 3, "e1", 18))
    assert [line.text for line in model.lines] == [
        "#lobby: 15 earlier messages could not be shown: the server no longer keeps them",
        "#lobby: earlier messages could not be shown: the server no longer keeps them",
    ]


def test_long_lines_wrap_between_words_under_the_first_lines_text() -> None:
    text = "a message long enough to wrap twice on a narrow terminal without cutting words"
    lines = wrap(13, text, 40)
    assert lines == [
        "a message long enough to",
        "             wrap twice on a narrow",
        "             terminal without cutting",
        "             words",
    ]
    assert all(len(line) <= 40 for line in lines)
    assert lines[0] and len("12:00 alice: " + lines[0]) <= 40
    # Paragraphs keep their breaks; a word longer than a line is cut; the indent stays
    # under a third of the width (a long nickname).
    assert wrap(4, "one\ntwo", 40) == ["one", "    two"]
    assert wrap(6, "x" * 30, 20) == ["x" * 14, "      " + "x" * 14, "      xx"]
    assert wrap(30, "some words here", 40) == ["some words", " " * 13 + "here"]


def publish(server: ServerProcess, room: str, nick: str, text: str) -> None:
    body = json.dumps({"nick": nick, "text": text, "ts": 1_767_225_600_000}).encode()
    request = urllib.request.Request(server.url(f"/api/publish/{room}"), data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.integration
def test_a_terminal_shows_the_rooms_past_on_joining_it_and_wraps_long_lines(
    server_factory: ServerFactory, tmux_socket: str
) -> None:
    server = server_factory("--set", "history_size=30")
    for number in range(1, 41):
        publish(server, "lobby", "bob", f"earlier {number}")
    long = "the quick brown fox jumps over the lazy dog " * 3
    publish(server, "lobby", "bob", long.strip())
    chat = [sys.executable, "-m", "pushwire", "chat", server.url()]
    alice = Terminal(tmux_socket, "alice", [*chat, "--nick", "alice"])
    screen = alice.wait_for("bob: the quick brown fox")
    # The newest at the bottom, in order, above the status bar; the long one wrapped between
    # words with its second line under the first one's text.
    lines = [line.split("│")[0].rstrip() for line in screen.splitlines()]
    at = next(i for i, line in enumerate(lines) if "bob: the quick brown fox" in line)
    assert lines[at - 1].endswith("bob: earlier 40") and lines[at - 2].endswith("bob: earlier 39")
    indent = lines[at].index("the quick")
    assert lines[at + 1].startswith(" " * indent) and lines[at + 1][indent] != " "
    for line in lines[at : at + 2]:
        assert line.split()[-1] in long.split(), line  # no word cut at the edge
    # Of 41 published, history keeps 30 and 50 were asked for: 11 are not shown, and it says.
    alice.type("/join kitchen")
    alice.wait_for("joined #kitchen")
    alice.type("/join lobby")
    alice.wait_for("* joined #lobby  ")  # not "joined #lobby over websocket"
    assert HISTORY_ON_JOIN > 41 - 30
    alice.wait_for("#lobby: 11 earlier messages could not be shown: the server no longer keeps")
    alice.type("/quit")


@pytest.mark.integration
def test_two_terminals_chat_over_websocket_and_tcp(
    server_factory: ServerFactory, tmux_socket: str
) -> None:
    server = server_factory("--tcp-port", "0")
    chat = [sys.executable, "-m", "pushwire", "chat"]
    alice = Terminal(tmux_socket, "alice", [*chat, server.url(), "--nick", "alice"])
    alice.wait_for("joined #lobby over websocket")
    bob = Terminal(
        tmux_socket, "bob", [*chat, f"tcp://127.0.0.1:{server.tcp_port}", "--nick", "bob"]
    )
    bob.wait_for("joined #lobby over tcp")
    # The people in the room: each sees the other arrive, listed beside the messages.
    screen = alice.wait_for("bob joined #lobby (2 online)")
    assert "people (2)" in screen
    assert any(line.rstrip().endswith("│ bob") for line in screen.splitlines())
    bob.wait_for("people (2)")
    alice.type("hello from alice")
    bob.wait_for("alice: hello from alice")
    bob.type("hi alice, bob here")
    screen = alice.wait_for("bob: hi alice, bob here")
    assert "2 online" in alice.wait_for("2 online")
    assert "· alice · websocket · connected" in screen
    alice.type("/who")
    alice.wait_for("#lobby: 2 online: alice, bob")
    alice.type("/transport longpoll")
    alice.wait_for("joined #lobby over longpoll")
    bob.type("still there?")
    alice.wait_for("bob: still there?")
    alice.type("/quit")
