"""A program in a real terminal: tmux runs it, send-keys types, capture-pane reads the
screen. Shared by the terminal chat's tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


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
        return self.wait_until(lambda screen: text in screen, repr(text), timeout)

    def wait_until(self, check: Callable[[str], bool], what: str, timeout: float = 15.0) -> str:
        """The screen, once `check(screen)` holds (else AssertionError naming `what`)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not on {self.name}'s screen:\n{screen}")
            time.sleep(0.1)  # polling the screen is the only way to read a terminal


def tmux_session_name() -> str:
    """A tmux server socket name of its own for one test."""
    return f"pushwire-test-{time.monotonic_ns()}"
