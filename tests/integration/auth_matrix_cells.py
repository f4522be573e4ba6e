"""How each door does each action of the authorization matrix
(tests/integration/test_auth_matrix.py): one function per kind of cell, run for one case,
"allowed" or a named refusal of the decider's `Cases`. Here: what every cell shares and the
pushwire.v1 doors; the raw doors and the HTTP API are in
tests/integration/auth_matrix_raw_cells.py.

Every refusal is checked to the byte: the error envelope (code, message, the request's
`id`), the close code and reason, the HTTP status and body. Every "gets nothing" is checked
without sleeping: the refused client, or a listener, must get a later allowed message next
(a `recv` reads the very next envelope, so nothing can slip in before it), or the connection
must end right after its refusal. Direct messages are counted by the server: `/api/send`
says how many sessions got one, and a refused client's user has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import pytest

from tests.door_clients import Envelopes, Target, api_call, open_envelopes
from tests.integration.auth_matrix_deciders import API_KEY, Cases, Credential, Refusal

__all__ = [
    "ALLOWED",
    "Cell",
    "Context",
    "NotApplicable",
    "delivered",
    "direct",
    "listening",
    "next_message",
    "publish",
    "reading",
    "sender_case",
]

ALLOWED: Final = "allowed"
Envelope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """One cell's run: the door, the server, and the decider's cases for this test."""

    door: str
    target: Target
    cases: Cases
    tag: str


@dataclass(frozen=True, slots=True)
class Cell:
    """How a door does an action (`run(context, case)`), and the cases it runs under a
    decider (`cases(decider's Cases)`: "allowed" and the refusals)."""

    run: Callable[[Context, str], None]
    cases: Callable[[Cases], Sequence[str]]


@dataclass(frozen=True, slots=True)
class NotApplicable:
    """A cell that does not exist, and why."""

    reason: str


# -- the HTTP API, as the server's own backend uses it -----------------------------------------


def publish(context: Context, channel: str, data: str) -> Envelope:
    """Publish as the server (the API with its key); the message's position."""
    status, answer = api_call(context.target, "POST", f"/api/publish/{channel}", data, API_KEY)
    assert status == 200, answer
    result: Envelope = answer
    return result


def direct(context: Context, user: str, data: str) -> Envelope:
    """Send `user` a direct message (the API with its key); the server's count of it (its
    place in the user's inbox checked and left out)."""
    status, answer = api_call(context.target, "POST", f"/api/send/{user}", data, API_KEY)
    assert status == 200, answer
    assert isinstance(answer.pop("epoch"), str) and isinstance(answer.pop("offset"), int)
    result: Envelope = answer
    return result


def delivered(user: str, sessions: int) -> Envelope:
    """`/api/send`'s answer when `sessions` sessions (of this one process) got it."""
    return {"user": user, "nodes": 1 if sessions else 0, "sessions": sessions}


# -- pushwire.v1 -------------------------------------------------------------------------------


def v1(context: Context, credential: Credential, channel: str | None = None) -> Envelopes:
    """A pushwire.v1 connection at the context's door, `hello` sent with the credential;
    `ws-v1` opens `/ws/<channel>` (the lobby by default)."""
    hello = {
        name: value
        for name, value in (("user", credential.claim), ("token", credential.token))
        if value is not None
    }
    return open_envelopes(
        context.door, context.target, hello, channel=channel or context.cases.lobby
    )


@contextmanager
def listening(context: Context, channel: str) -> Iterator[Envelopes]:
    """A WebSocket client at `/pushwire` (the decider's alice) subscribed to `channel`."""
    cases = context.cases
    hello = {"user": cases.alice.claim, "token": cases.alice.token}
    with open_envelopes("websocket", context.target, hello) as listener:
        welcomed(listener, cases.user)
        subscribed(listener, channel, 1)
        yield listener


def welcomed(conn: Envelopes, user: str | None) -> None:
    welcome = conn.recv()
    assert (welcome["type"], welcome["user"]) == ("welcome", user), welcome


def joined(conn: Envelopes) -> None:
    """`/ws/<channel>` joins its channel in the step that answers `hello`: a ping's pong
    comes after that step."""
    assert ask(conn, {"type": "ping"}) == {"type": "pong"}


def ask(conn: Envelopes, request: Envelope) -> Envelope:
    """Send `request`; the very next envelope."""
    conn.send(request)
    return conn.recv()


def subscribed(conn: Envelopes, channel: str, request_id: int, **extra: Any) -> None:
    answer = ask(conn, {"type": "subscribe", "id": request_id, "channel": channel, **extra})
    assert (answer["type"], answer["id"], answer["channel"]) == (
        "subscribed",
        request_id,
        channel,
    ), answer


def error(request_id: int | None, refusal: Refusal) -> Envelope:
    """The error envelope of a refusal (a request without `id` gets one without)."""
    found: Envelope = {"type": "error", "code": refusal.code, "message": refusal.message}
    if request_id is not None:
        found["id"] = request_id
    return found


def refused_and_closed(conn: Envelopes, refusal: Refusal) -> None:
    """The refusal, the close with its code, and nothing after."""
    assert conn.recv() == error(None, refusal)
    assert conn.recv() == {"type": "close", "code": refusal.close_code, "reason": refusal.message}
    with pytest.raises(EOFError):
        conn.recv()


def next_message(conn: Envelopes, channel: str, data: str) -> None:
    got = conn.recv()
    assert (got["type"], got.get("channel"), got.get("data")) == ("message", channel, data), got


def members(presence: Envelope, channel: str, request_id: int | None = None) -> list[str]:
    assert (presence["type"], presence["channel"], presence.get("id")) == (
        "presence",
        channel,
        request_id,
    ), presence
    return [member["user"] for member in presence["members"]]


def connect_v1(context: Context, case: str) -> None:
    cases = context.cases
    if case == ALLOWED:
        with v1(context, cases.alice) as conn:
            welcomed(conn, cases.user)  # the user proved, not claimed
            if conn.door == "ws-v1":
                joined(conn)
        return
    credential, refusal = cases.connect_refused[case]
    with v1(context, credential) as conn:
        refused_and_closed(conn, refusal)


def reading(cases: Cases, case: str) -> tuple[Credential, str, Refusal | None]:
    """Who reads which channel in a subscribe or history cell, and its refusal (None: the
    allowed reader)."""
    if case == ALLOWED:
        return cases.reader, cases.guarded, None
    if case == "refused":
        return cases.outsider, cases.guarded, cases.guarded_refusal
    return cases.read_refused[case]


def subscribe_v1(context: Context, case: str) -> None:
    cases = context.cases
    who, channel, refusal = reading(cases, case)
    with v1(context, who) as conn:
        welcomed(conn, who.claim)
        if refusal is None:
            subscribed(conn, channel, 1)
            publish(context, channel, "for the readers")
            next_message(conn, channel, "for the readers")
            return
        request = {"type": "subscribe", "id": 1, "channel": channel}
        assert ask(conn, request) == error(1, refusal)
        subscribed(conn, cases.lobby, 2)  # still connected
        publish(context, channel, "not for outsiders")
        publish(context, cases.lobby, "later")
        next_message(conn, cases.lobby, "later")


def subscribe_ws_v1(context: Context, case: str) -> None:
    who, channel, refusal = reading(context.cases, case)
    with v1(context, who, channel) as conn:
        welcomed(conn, who.claim)
        if refusal is None:
            joined(conn)
            publish(context, channel, "for the readers")
            next_message(conn, channel, "for the readers")
            return
        publish(context, channel, "not for outsiders")
        refused_and_closed(conn, refusal)


def publish_v1(context: Context, case: str) -> None:
    cases = context.cases
    channel, data, refusal = (
        (cases.talk, cases.talk_data, None) if case == ALLOWED else cases.refused_publish
    )
    with listening(context, channel) as listener, v1(context, cases.alice) as conn:
        welcomed(conn, cases.user)
        subscribed(conn, channel, 1)  # a member, where only members may publish
        conn.send({"type": "publish", "id": 2, "channel": channel, "data": data})
        if refusal is None:
            # The answer and the publisher's own copy come in either order.
            answers = sorted((conn.recv() for _ in range(2)), key=lambda got: str(got["type"]))
            assert [(got["type"], got.get("data")) for got in answers] == [
                ("message", data),
                ("published", None),
            ]
            next_message(listener, channel, data)
            return
        assert conn.recv() == error(2, refusal)
        publish(context, channel, "later")
        next_message(listener, channel, "later")
        next_message(conn, channel, "later")


def publish_ws_v1(context: Context, case: str) -> None:
    """`send` on `/ws/<channel>` publishes to the channel (refused: an error without id, the
    connection stays)."""
    cases = context.cases
    channel, data, refusal = (
        (cases.talk, cases.talk_data, None) if case == ALLOWED else cases.refused_publish
    )
    with listening(context, channel) as listener, v1(context, cases.alice, channel) as conn:
        welcomed(conn, cases.user)
        joined(conn)
        conn.send({"type": "send", "data": data})
        if refusal is None:
            next_message(conn, channel, data)
            next_message(listener, channel, data)
            return
        assert conn.recv() == error(None, refusal)
        publish(context, channel, "later")
        next_message(listener, channel, "later")
        next_message(conn, channel, "later")


def sender_case(cases: Cases, case: str) -> tuple[Credential, Refusal | None, str | None]:
    """Who tries to get the user's direct messages: the credential, the refusal at connect
    (None: let in), the user it is then."""
    if case == ALLOWED:
        return cases.alice, None, cases.user
    found = cases.send_refused[case]
    return found.credential, found.refusal, found.user


def send_v1(context: Context, case: str) -> None:
    cases = context.cases
    credential, refusal, user = sender_case(cases, case)
    with v1(context, credential) as conn:
        if refusal is not None:
            refused_and_closed(conn, refusal)
            assert direct(context, cases.user, "for alice only") == delivered(cases.user, 0)
            return
        welcomed(conn, user)
        if conn.door == "ws-v1":
            joined(conn)
        else:
            subscribed(conn, cases.lobby, 1)
        answer = direct(context, cases.user, "for alice only")
        if case == ALLOWED:
            assert answer == delivered(cases.user, 1)
            message = conn.recv()  # a direct message: its place in the user's inbox, no channel
            assert (message["type"], message["data"]) == ("message", "for alice only")
            assert "channel" not in message and isinstance(message["offset"], int)
            return
        assert answer == delivered(cases.user, 0)
        publish(context, cases.lobby, "later")
        next_message(conn, cases.lobby, "later")


def since_before(position: Envelope) -> dict[str, Any]:
    """The position just before a published message's."""
    return {"epoch": position["epoch"], "offset": position["offset"] - 1}


def replayed(position: Envelope, data: str) -> Envelope:
    channel, epoch, offset = position["channel"], position["epoch"], position["offset"]
    return {"type": "message", "channel": channel, "epoch": epoch, "offset": offset, "data": data}


def history_v1(context: Context, case: str) -> None:
    cases = context.cases
    who, channel, refusal = reading(cases, case)
    before = publish(context, channel, "before you came")
    since = since_before(before)
    with v1(context, who) as conn:
        welcomed(conn, who.claim)
        if refusal is None:
            subscribed(conn, channel, 1, since=since)
            assert conn.recv() == replayed(before, "before you came")
            return
        request = {"type": "subscribe", "id": 1, "channel": channel, "since": since}
        assert ask(conn, request) == error(1, refusal)
        allowed = publish(context, cases.lobby, "history you may read")
        subscribed(conn, cases.lobby, 2, since=since_before(allowed))
        assert conn.recv() == replayed(allowed, "history you may read")


def history_ws_v1(context: Context, case: str) -> None:
    who, channel, refusal = reading(context.cases, case)
    before = publish(context, channel, "before you came")
    request = {"type": "subscribe", "id": 1, "channel": channel, "since": since_before(before)}
    with v1(context, who, channel) as conn:
        if refusal is None:
            welcomed(conn, who.claim)
            joined(conn)
            assert ask(conn, request)["type"] == "subscribed"  # its channel, from a position
            assert conn.recv() == replayed(before, "before you came")
            return
        conn.send(request)  # right behind the hello: it must not be answered either
        welcomed(conn, who.claim)
        refused_and_closed(conn, refusal)


def presence_refusals(cases: Cases) -> tuple[Refusal, Refusal]:
    """Presence where its namespace turns it off, and without a subscription."""
    return (
        Refusal("forbidden", f"presence is off for {cases.quiet!r}"),
        Refusal("bad_request", f"not subscribed to {cases.lobby!r}: subscribe to see who is there"),
    )


def presence_v1(context: Context, case: str) -> None:
    cases = context.cases
    off, unsubscribed = presence_refusals(cases)
    lobby = cases.lobby
    if case == ALLOWED:
        with v1(context, cases.alice) as conn:
            welcomed(conn, cases.user)
            subscribed(conn, lobby, 1, presence=True)
            assert members(conn.recv(), lobby) == [cases.user]
            assert members(
                ask(conn, {"type": "presence", "id": 2, "channel": lobby}), lobby, 2
            ) == [cases.user]
        return
    with v1(context, cases.quiet_reader if case == "off" else cases.alice) as conn:
        welcomed(conn, cases.user)
        if case == "off":
            request = {"type": "subscribe", "id": 1, "channel": cases.quiet, "presence": True}
            assert ask(conn, request) == error(1, off)
            subscribed(conn, cases.quiet, 2)  # reading it is allowed, asking who is there not
            assert ask(conn, {"type": "presence", "id": 3, "channel": cases.quiet}) == error(3, off)
        else:
            assert ask(conn, {"type": "presence", "id": 3, "channel": lobby}) == error(
                3, unsubscribed
            )
        subscribed(conn, lobby, 4)
        answer = ask(conn, {"type": "presence", "id": 5, "channel": lobby})
        assert members(answer, lobby, 5) == [cases.user]


def presence_ws_v1(context: Context, case: str) -> None:
    cases = context.cases
    off, unsubscribed = presence_refusals(cases)
    lobby = cases.lobby
    if case == ALLOWED:
        with v1(context, cases.alice, lobby) as conn:
            welcomed(conn, cases.user)
            joined(conn)
            answer = ask(conn, {"type": "presence", "id": 1, "channel": lobby})
            assert members(answer, lobby, 1) == [cases.user]
        return
    if case == "off":
        conn = v1(context, cases.quiet_reader, cases.quiet)
        asked, refusal = cases.quiet, off
    else:
        conn = v1(context, cases.alice, cases.talk)
        asked, refusal = lobby, unsubscribed
    with conn:
        welcomed(conn, cases.user)
        joined(conn)
        assert ask(conn, {"type": "presence", "id": 1, "channel": asked}) == error(1, refusal)
        subscribed(conn, lobby, 2)
        answer = ask(conn, {"type": "presence", "id": 3, "channel": lobby})
        assert members(answer, lobby, 3) == [cases.user]
