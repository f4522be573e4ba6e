"""`pushwire chat URL`: a terminal chat room on any pushwire transport.

The model (`ChatModel`) holds the room, the nickname, the lines on screen and the connection
state, and turns what the user types into actions; it knows no terminal. The view is a
prompt_toolkit full-screen application: the lines above, the people in the room beside them
(presence, across every node of the server), a status bar, an input line below, and messages,
joins and leaves keep arriving while you type. Chat messages are the JSON text the browser demo
uses, `{"nick": …, "text": …, "ts": …}`, so terminals and browsers share rooms.

Commands: `/join ROOM`, `/nick NAME`, `/transport NAME`, `/who`, `/help`, `/quit`.

As on the page: joining a room shows its last `HISTORY_ON_JOIN` messages from the server's
history (and says so when history no longer reaches back), and a new nickname is a new
connection under that name, so that everyone's people list shows it. Long lines wrap between
words, indented under the first line's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .client import Failure, Gap, Join, Leave, Presence, connect

__all__ = ["Action", "ChatModel", "Line", "run_chat"]

#: Lines kept on screen; older ones scroll away.
MAX_LINES: Final = 1000
#: Messages of a room's past shown on joining it (from the server's history), as the page.
HISTORY_ON_JOIN: Final = 50
#: Positions of messages shown, remembered so that a room's past joined again is shown once.
MAX_SEEN: Final = 5000
#: A continuation line is indented under the text, by at most this share of the width.
MAX_INDENT_SHARE: Final = 3
HTTP_TRANSPORTS: Final = ("websocket", "sse", "stream", "longpoll", "polling")
#: Columns of the people pane beside the messages.
PEOPLE_WIDTH: Final = 22


@dataclass(frozen=True, slots=True)
class Line:
    """One line on screen: `kind` is message, own, system or error."""

    time: str
    kind: Literal["message", "own", "system", "error"]
    text: str
    nick: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    """What the view must do for an input line."""

    kind: Literal["publish", "join", "transport", "nick", "quit", "none"]
    argument: str = ""


def _clock(ts: float | None = None) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


class ChatModel:
    """The chat's state, and the rules for input and incoming messages."""

    def __init__(
        self, nick: str, room: str, transport: str, transports: Sequence[str] = HTTP_TRANSPORTS
    ) -> None:
        self.nick = nick
        self.room = room
        self.transport = transport
        #: What /transport may switch to: what this URL can carry.
        self.transports = tuple(transports)
        self.state = "connecting"
        self.online: int | None = None
        self.client: Any = None  # the connected client, for its live presence
        self.lines: deque[Line] = deque(maxlen=MAX_LINES)
        # (channel, epoch, offset) of the messages shown, oldest first.
        self._seen: dict[tuple[str, str, int], None] = {}

    # -- input --------------------------------------------------------------------------------

    def submit(self, text: str) -> Action:
        """The user pressed Enter on `text`."""
        text = text.strip()
        if not text:
            return Action("none")
        if not text.startswith("/"):
            return Action("publish", self.encode(text))
        command, _, argument = text[1:].partition(" ")
        argument = argument.strip()
        if command in ("quit", "exit", "q"):
            return Action("quit")
        if command == "help":
            self.system(self.help())
        elif command == "nick" and argument and argument != self.nick:
            self.system(f"you are now {argument} (was {self.nick})")
            self.nick = argument
            return Action("nick", argument)
        elif command == "join" and argument:
            return Action("join", argument.lstrip("#"))
        elif command == "transport" and argument in self.transports:
            return Action("transport", argument)
        elif command == "who":
            count = "unknown" if self.online is None else str(self.online)
            people = ", ".join(self.people()) or "nobody known"
            self.system(f"#{self.room}: {count} online: {people}")
        else:
            self.error(f"unknown or incomplete command: {text}  ({self.help()})")
        return Action("none")

    def help(self) -> str:
        transports = "|".join(self.transports)
        return f"commands: /join ROOM · /nick NAME · /transport {transports} · /who · /help · /quit"

    def encode(self, text: str) -> str:
        """A chat message as the browser demo writes it."""
        return json.dumps({"nick": self.nick, "text": text, "ts": int(time.time() * 1000)})

    # -- what arrives ---------------------------------------------------------------------------

    def received(
        self, data: str | bytes, channel: str | None, position: tuple[str, int] | None = None
    ) -> None:
        """A message arrived (`channel` None: a direct message) at `position` (epoch, offset)
        of its channel: one shown already (the room's past, joined again) is not shown twice."""
        if channel is not None and channel != self.room:
            return
        if channel is not None and position is not None:
            key = (channel, *position)
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > MAX_SEEN:
                del self._seen[next(iter(self._seen))]
        if isinstance(data, bytes):
            self.lines.append(Line(_clock(), "message", f"[binary, {len(data)} bytes]", "?"))
            return
        try:
            message: Any = json.loads(data)
        except ValueError:
            message = None
        if isinstance(message, dict) and isinstance(message.get("text"), str):
            nick = str(message.get("nick") or "anonymous")
            ts = message.get("ts")
            when = _clock(ts / 1000) if isinstance(ts, int | float) else _clock()
            kind: Literal["own", "message"] = "own" if nick == self.nick else "message"
            self.lines.append(Line(when, kind, message["text"], nick))
        else:
            self.lines.append(Line(_clock(), "message", data, "?"))

    def lost(self, gap: Gap) -> None:
        """History could not reach back: how many messages are not shown, when known."""
        if gap.channel != self.room:
            return
        count = gap.to_offset - gap.from_offset if gap.from_epoch == gap.to_epoch else 0
        what = {0: "earlier messages", 1: "1 earlier message"}.get(
            count, f"{count} earlier messages"
        )
        self.error(f"#{gap.channel}: {what} could not be shown: the server no longer keeps them")

    def presence_changed(self, event: Join | Leave) -> None:
        """Someone joined or left a room: a line when it is this room."""
        if event.channel != self.room:
            return
        who = event.member.user or "someone anonymous"
        verb = "joined" if isinstance(event, Join) else "left"
        self.system(f"{who} {verb} #{self.room} ({event.count} online)")

    def presence(self) -> Presence | None:
        if self.client is None:
            return None
        presence: Presence | None = self.client.presence.get(self.room)
        return presence

    def people(self) -> list[str]:
        """The people in the room by name, once each; `name (2)` for two sessions."""
        presence = self.presence()
        if presence is None:
            return []
        sessions: dict[str, int] = {}
        for member in presence.members.values():
            name = member.user or "anonymous"
            sessions[name] = sessions.get(name, 0) + 1
        return [f"{name} ({n})" if n > 1 else name for name, n in sorted(sessions.items())]

    def system(self, text: str) -> None:
        self.lines.append(Line(_clock(), "system", text))

    def error(self, text: str) -> None:
        self.lines.append(Line(_clock(), "error", text))

    def status(self) -> str:
        """The status bar's text."""
        presence = self.presence()
        if presence is not None:
            self.online = presence.count
        online = "" if self.online is None else f" · {self.online} online"
        return (
            f" pushwire chat · #{self.room}{online} · {self.nick} · "
            f"{self.transport} · {self.state} "
        )


def wrap(prefix: int, text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` columns, broken between words; the first line
    follows a prefix of `prefix` columns, the others are indented by as much (a hanging
    indent, at most a third of the width). A word longer than a line is cut."""
    prefix = min(prefix, max(0, width - 1))
    indent = " " * min(prefix, width // MAX_INDENT_SHARE)
    wrapper = textwrap.TextWrapper(
        max(1, width), initial_indent="\0" * prefix, subsequent_indent=indent,
        break_on_hyphens=False,
    )  # fmt: skip
    lines: list[str] = []
    for paragraph in text.split("\n"):
        wrapped = wrapper.wrap(paragraph) or [""]
        # The text's first line follows the prefix; a later paragraph's starts on its own.
        lines.append(("" if not lines else indent) + wrapped[0].lstrip("\0"))
        lines.extend(wrapped[1:])
    return lines


# -- the terminal view ------------------------------------------------------------------------


async def run_chat(
    url: str, nick: str, room: str, transports: Sequence[str], token: str | None = None
) -> int:
    """Run the full-screen chat until /quit or Ctrl-C/Ctrl-D. Returns the exit status.

    `token`: the connection token (JWT) of a server that authenticates, sent on every
    connection; the server then knows the user by the token, not by `nick`. It is not
    refreshed: once it expires the server closes the connection (4005) and the chat keeps
    retrying with it, so give it a token that lives as long as the chat should.
    """
    from prompt_toolkit.application import Application
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.data_structures import Point
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
    from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
    from prompt_toolkit.styles import Style

    choices = ("tcp",) if url.startswith("tcp") else HTTP_TRANSPORTS
    model = ChatModel(nick, room, transports[0] if transports else choices[0], choices)
    model.system(f"connecting to {url} … type a message and press Enter · /help")

    rows = [0]  # lines the messages take on screen, for the cursor that keeps the last shown

    def render_lines() -> FormattedText:
        # The messages' column: the terminal less the people pane and its border.
        width = max(20, app.output.get_size().columns - PEOPLE_WIDTH - 1)
        fragments: list[tuple[str, str]] = []
        count = 0
        for line in model.lines:
            fragments.append(("class:time", f"{line.time} "))
            if line.kind in ("system", "error"):
                head, style = ("class:time", "* "), f"class:{line.kind}"
            else:
                head, style = (f"class:{line.kind}-nick", f"{line.nick}: "), f"class:{line.kind}"
            fragments.append(head)
            text = wrap(len(line.time) + 1 + len(head[1]), line.text, width)
            fragments.append((style, "\n".join(text) + "\n"))
            count += len(text)
        rows[0] = count
        return FormattedText(fragments)

    def render_people() -> FormattedText:
        people = model.people()
        fragments: list[tuple[str, str]] = [("class:people-title", f" people ({len(people)})\n")]
        for name in people:
            kind = "own-nick" if name.split(" (")[0] == model.nick else "people"
            fragments.append((f"class:{kind}", f" {name}\n"))
        return FormattedText(fragments)

    # The cursor (hidden) on the last line: the window scrolls to keep the newest in view.
    messages = Window(
        FormattedTextControl(
            render_lines, get_cursor_position=lambda: Point(0, max(0, rows[0] - 1))
        ),
        wrap_lines=True,
        always_hide_cursor=True,
    )
    people = Window(
        FormattedTextControl(render_people), width=PEOPLE_WIDTH, always_hide_cursor=True
    )
    status = Window(
        FormattedTextControl(lambda: FormattedText([("class:status", model.status())])),
        height=1,
    )
    entry = Buffer(multiline=False)
    prompt = Window(
        BufferControl(entry),
        height=1,
        get_line_prefix=lambda *_: FormattedText([("class:prompt", "> ")]),
    )
    keys = KeyBindings()
    quit_event = asyncio.Event()

    @keys.add("c-c")
    @keys.add("c-d")
    def _quit(event: Any) -> None:
        quit_event.set()

    @keys.add("enter")
    def _enter(event: Any) -> None:
        text = entry.text
        entry.reset()
        action = model.submit(text)
        actions.put_nowait(action)
        app.invalidate()

    style = Style.from_dict(
        {
            "status": "reverse bold",
            "time": "#888888",
            "system": "#5f87d7 italic",
            "error": "#d75f5f bold",
            "own-nick": "#5faf5f bold",
            "message-nick": "#d7af5f bold",
            "prompt": "bold",
            "people-title": "bold underline",
            "people": "",
        }
    )
    app: Application[None] = Application(
        layout=Layout(
            HSplit([VSplit([messages, Window(width=1, char="│"), people]), status, prompt]),
            focused_element=prompt,
        ),
        key_bindings=keys,
        style=style,
        full_screen=True,
        refresh_interval=0.5,  # the connection state changes on its own
    )
    actions: asyncio.Queue[Action] = asyncio.Queue()

    async def session() -> None:
        transport_list = list(transports)
        while not quit_event.is_set():
            try:
                async with connect(
                    url, user=model.nick, token=token, transports=transport_list
                ) as client:
                    model.client = client
                    model.transport = client.transport
                    model.state = "connected"
                    events = client.presence_events()  # before the joins it must not miss
                    await client.subscribe(model.room, presence=True, rewind=HISTORY_ON_JOIN)
                    model.system(f"joined #{model.room} over {client.transport}")
                    app.invalidate()
                    switch = await _converse(client, events, model, actions, quit_event, app)
            except Exception as exc:
                model.state = "disconnected"
                model.error(f"connection failed: {exc}; retrying")
                app.invalidate()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(quit_event.wait(), 2)
                continue
            if switch is None:
                return
            if switch.kind == "transport":
                transport_list = [switch.argument]
                model.system(f"switching to {switch.argument}")
            else:  # a new nickname: a new connection under it, as the page does
                transport_list = [model.transport, *(t for t in transports if t != model.transport)]
            model.state = "switching"
            app.invalidate()

    task = asyncio.ensure_future(session())
    app_task = asyncio.ensure_future(app.run_async())
    await quit_event.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    app.exit()
    with contextlib.suppress(Exception):
        await app_task
    return 0


async def _converse(
    client: Any,
    events: Any,
    model: ChatModel,
    actions: asyncio.Queue[Action],
    quit_event: asyncio.Event,
    app: Any,
) -> Action | None:
    """Relay until quit (None), a transport switch or a new nickname (the action)."""

    async def incoming() -> None:
        async for message in client:
            if isinstance(message, Gap):
                model.lost(message)
            elif isinstance(message, Failure):
                where = f"#{message.channel}: " if message.channel else ""
                model.error(f"{where}{message.operation} failed: {message.message}")
            else:
                epoch, offset = message.epoch, message.offset
                position = None if epoch is None or offset is None else (epoch, offset)
                model.received(message.data, message.channel, position)
            app.invalidate()

    async def presence() -> None:
        async for event in events:
            model.presence_changed(event)
            app.invalidate()

    reader = asyncio.ensure_future(incoming())
    watcher = asyncio.ensure_future(presence())
    try:
        while True:
            getter = asyncio.ensure_future(actions.get())
            quitter = asyncio.ensure_future(quit_event.wait())
            done, _ = await asyncio.wait(
                {getter, quitter, reader}, return_when=asyncio.FIRST_COMPLETED
            )
            if quitter in done or reader in done:
                getter.cancel()
                quit_event.set()
                return None
            quitter.cancel()
            action = getter.result()
            if action.kind == "quit":
                quit_event.set()
                return None
            if action.kind == "publish":
                try:
                    await client.publish(model.room, action.argument)
                except Exception as exc:
                    model.error(f"not sent: {exc}")
            elif action.kind == "join":
                await client.unsubscribe(model.room)
                model.room, model.online = action.argument, None
                await client.subscribe(model.room, presence=True, rewind=HISTORY_ON_JOIN)
                model.system(f"joined #{model.room}")
            elif action.kind in ("transport", "nick"):
                return action
            app.invalidate()
    finally:
        reader.cancel()
        watcher.cancel()
