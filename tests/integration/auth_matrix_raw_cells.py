"""How the raw doors (`/ws/<channel>` without a subprotocol, `/sse/<channel>`) and the HTTP
API do each action of the authorization matrix (tests/integration/test_auth_matrix.py); what
the cells share, and the pushwire.v1 doors, are in tests/integration/auth_matrix_cells.py.

Raw mode has no error envelope: a refused raw WebSocket learns it from the close code and
reason, a refused raw SSE stream from the HTTP status and the body's one line.
"""

from __future__ import annotations

import time
from typing import Final

from tests.door_clients import WAIT, RawSse, RawWebSocket, SseEvent, api_call
from tests.integration.auth_matrix_cells import (
    ALLOWED,
    Context,
    delivered,
    direct,
    listening,
    next_message,
    publish,
    reading,
    sender_case,
)
from tests.integration.auth_matrix_deciders import API_KEY, Credential, Refusal

__all__ = [
    "connect_api",
    "connect_raw_sse",
    "connect_raw_ws",
    "history_raw_sse",
    "publish_api",
    "publish_raw_ws",
    "send_api",
    "send_raw_sse",
    "send_raw_ws",
    "subscribe_raw_sse",
    "subscribe_raw_ws",
]


# -- raw /ws/<channel> -------------------------------------------------------------------------


def raw_ws(context: Context, credential: Credential, channel: str) -> RawWebSocket:
    """Raw `/ws/<channel>`: the claim in `?user=`, the token in `?token=` (a browser's
    WebSocket can set no header)."""
    query = {
        name: value
        for name, value in (("user", credential.claim), ("token", credential.token))
        if value is not None
    }
    return RawWebSocket(context.target, channel, query)


def closed_with(refusal: Refusal) -> tuple[int, str]:
    return refusal.close_code, refusal.message


def connect_raw_ws(context: Context, case: str) -> None:
    cases = context.cases
    if case == ALLOWED:
        with raw_ws(context, cases.alice, cases.lobby) as ws:
            assert ws.opened()
            publish(context, cases.lobby, "hello raw")
            assert ws.recv() == "hello raw"
        return
    credential, refusal = cases.connect_refused[case]
    with raw_ws(context, credential, cases.lobby) as ws:
        publish(context, cases.lobby, "not for the refused")
        assert ws.recv() == closed_with(refusal)


def subscribe_raw_ws(context: Context, case: str) -> None:
    who, channel, refusal = reading(context.cases, case)
    with raw_ws(context, who, channel) as ws:
        if refusal is None:
            assert ws.opened()
            publish(context, channel, "for the readers")
            assert ws.recv() == "for the readers"
            return
        publish(context, channel, "not for outsiders")
        assert ws.recv() == closed_with(refusal)


def publish_raw_ws(context: Context, case: str) -> None:
    cases = context.cases
    channel, data, refusal = (
        (cases.talk, cases.talk_data, None) if case == ALLOWED else cases.refused_publish
    )
    with listening(context, channel) as listener, raw_ws(context, cases.alice, channel) as ws:
        assert ws.opened()
        ws.send(data)  # a frame is a publish to the channel
        if refusal is None:
            assert ws.recv() == data
            next_message(listener, channel, data)
            return
        assert ws.recv() == closed_with(refusal)
        publish(context, channel, "later")
        next_message(listener, channel, "later")


def send_raw_ws(context: Context, case: str) -> None:
    cases = context.cases
    credential, refusal, _ = sender_case(cases, case)
    with raw_ws(context, credential, cases.lobby) as ws:
        if refusal is not None:
            assert ws.recv() == closed_with(refusal)
            assert direct(context, cases.user, "for alice only") == delivered(cases.user, 0)
            return
        assert ws.opened()
        answer = direct(context, cases.user, "for alice only")
        if case == ALLOWED:
            assert answer == delivered(cases.user, 1)
            assert ws.recv() == "for alice only"
            return
        assert answer == delivered(cases.user, 0)
        publish(context, cases.lobby, "later")
        assert ws.recv() == "later"


# -- raw /sse/<channel> ------------------------------------------------------------------------


def raw_sse(
    context: Context, credential: Credential, channel: str, last_event_id: str | None = None
) -> RawSse:
    """Raw `/sse/<channel>`: the claim in `?user=`, the token as `Authorization: Bearer`."""
    headers = {"Authorization": f"Bearer {credential.token}"} if credential.token else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    query = {"user": credential.claim} if credential.claim else {}
    return RawSse(context.target, channel, query, headers)


def refused_with_status(stream: RawSse, refusal: Refusal) -> None:
    """Refused before its stream: the status and the one-line reason, no event."""
    assert (stream.status, stream.refusal) == (refusal.status, refusal.message + "\n")


def first_event(context: Context, stream: RawSse, channel: str, data: str) -> None:
    """Publish `data` until the stream gets it: the status line may come before the
    stream's session joined its channel. Each wait is bounded; so is the whole."""
    assert stream.status == 200, stream.refusal
    deadline = time.monotonic() + WAIT
    positions = set()
    while True:
        answer = publish(context, channel, data)
        positions.add(f"{answer['epoch']}:{answer['offset']}")
        try:
            event = stream.next_event(0.2)
        except TimeoutError:
            assert time.monotonic() < deadline, "the stream got nothing"
            continue
        assert event.data == data and event.id in positions, event
        return


def next_event_besides(stream: RawSse, probe: str) -> SseEvent:
    while (event := stream.next_event()).data == probe:
        pass
    return event


def connect_raw_sse(context: Context, case: str) -> None:
    cases = context.cases
    if case == ALLOWED:
        with raw_sse(context, cases.alice, cases.lobby) as stream:
            first_event(context, stream, cases.lobby, "hello raw sse")
        return
    credential, refusal = cases.connect_refused[case]
    with raw_sse(context, credential, cases.lobby) as stream:
        refused_with_status(stream, refusal)


def subscribe_raw_sse(context: Context, case: str) -> None:
    who, channel, refusal = reading(context.cases, case)
    with raw_sse(context, who, channel) as stream:
        if refusal is None:
            first_event(context, stream, channel, "for the readers")
            return
        refused_with_status(stream, refusal)


def send_raw_sse(context: Context, case: str) -> None:
    cases = context.cases
    credential, refusal, _ = sender_case(cases, case)
    with raw_sse(context, credential, cases.lobby) as stream:
        if refusal is not None:
            refused_with_status(stream, refusal)
            assert direct(context, cases.user, "for alice only") == delivered(cases.user, 0)
            return
        first_event(context, stream, cases.lobby, "ready")
        answer = direct(context, cases.user, "for alice only")
        if case == ALLOWED:
            assert answer == delivered(cases.user, 1)
            assert next_event_besides(stream, "ready") == SseEvent("for alice only")
            return
        assert answer == delivered(cases.user, 0)
        publish(context, cases.lobby, "later")
        assert next_event_besides(stream, "ready").data == "later"


def history_raw_sse(context: Context, case: str) -> None:
    who, channel, refusal = reading(context.cases, case)
    before = publish(context, channel, "before you came")
    last = f"{before['epoch']}:{before['offset'] - 1}"  # as a browser's Last-Event-ID
    with raw_sse(context, who, channel, last) as stream:
        if refusal is None:
            assert stream.status == 200, stream.refusal
            position = f"{before['epoch']}:{before['offset']}"
            assert stream.next_event() == SseEvent("before you came", position)
            return
        refused_with_status(stream, refusal)


# -- the HTTP API ------------------------------------------------------------------------------

API_KEYS: Final = {ALLOWED: API_KEY, "no-key": None, "wrong-key": "not-the-key"}
WRONG_KEY: Final = (401, "missing or wrong API key (Authorization: Bearer <key>)")


def connect_api(context: Context, case: str) -> None:
    """The API's one question is its key (`GET /api/stats` asks only that)."""
    status, answer = api_call(context.target, "GET", "/api/stats", key=API_KEYS[case])
    if case == ALLOWED:
        assert status == 200 and "sessions" in answer, answer
    else:
        assert (status, answer) == WRONG_KEY


def publish_api(context: Context, case: str) -> None:
    cases = context.cases
    if case == "unknown-namespace":
        channel = f"nope{context.tag}:x"
        refused = (403, f"no namespace 'nope{context.tag}' on this server (channel {channel!r})")
        assert api_call(context.target, "POST", f"/api/publish/{channel}", "x", API_KEY) == refused
        return
    with listening(context, cases.talk) as listener:
        path = f"/api/publish/{cases.talk}"
        status, answer = api_call(context.target, "POST", path, "from the server", API_KEYS[case])
        if case == ALLOWED:
            assert (status, answer["channel"]) == (200, cases.talk), answer
            next_message(listener, cases.talk, "from the server")
            return
        assert (status, answer) == WRONG_KEY
        publish(context, cases.talk, "later")
        next_message(listener, cases.talk, "later")


def send_api(context: Context, case: str) -> None:
    cases = context.cases
    with listening(context, cases.lobby) as receiver:  # the user's own session
        path = f"/api/send/{cases.user}"
        status, answer = api_call(context.target, "POST", path, "for alice only", API_KEYS[case])
        if case == ALLOWED:
            assert isinstance(answer.pop("epoch"), str) and isinstance(answer.pop("offset"), int)
            assert (status, answer) == (200, delivered(cases.user, 1))
            message = receiver.recv()  # a direct message: its place in the inbox, no channel
            assert (message["type"], message["data"]) == ("message", "for alice only")
            assert "channel" not in message and isinstance(message["offset"], int)
            return
        assert (status, answer) == WRONG_KEY
        publish(context, cases.lobby, "later")
        next_message(receiver, cases.lobby, "later")
