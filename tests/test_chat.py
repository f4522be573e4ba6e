"""The terminal chat: its model without a terminal, and the real program driven in tmux."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pushwire.chat import Action, ChatModel
from tests.servers import ServerFactory


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
    assert model.submit("/nick bob") == Action("none")
    assert model.nick == "bob"
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


class Terminal:
    """A program in its own tmux server (a private socket), read with capture-pane."""

    def __init__(self, socket_name: str, name: str, command: list[str]) -> None:
        self.socket, self.name = socket_name, name
        self._tmux("new-session", "-d", "-s", name, "-x", "110", "-y", "24", " ".join(command))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, text, "Enter")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on {self.name}'s screen:\n{screen}")
            time.sleep(0.1)  # polling the screen is the only way to read a terminal


@pytest.fixture
def tmux_socket() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    name = f"pushwire-test-{time.monotonic_ns()}"
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, check=False)


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
