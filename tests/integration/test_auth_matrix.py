"""Who may do what, the whole grid (issue 13, "Must show"): every door, every action, every
way to decide. In each cell a refused identity is refused with the documented code
(docs/security.md, "Codes of a refusal") and gets nothing, and an allowed one succeeds.

The grid below says how each cell is driven (tests/integration/auth_matrix_cells.py and
auth_matrix_raw_cells.py), or why it does not exist. Each cell runs under each decider
(tests/integration/auth_matrix_deciders.py: JWT with namespaces, served by `pushwire serve`
and by a hub without handlers; an app's handlers; the backend proxy with a real backend
process; and the two in-process hubs behind the ASGI door on uvicorn, `-asgi`), for
"allowed" and for each refusal the decider has for it; a test is
`test_cell[<decider>-<door>-<action>-<case>]`.

The doors: pushwire.v1 at `/pushwire` over each transport (`websocket`, `sse`, `stream`,
`iframe`, `longpoll`, `polling`, and the TCP port), `/ws/<channel>` with pushwire.v1
(`ws-v1`) and raw (`raw-ws`), raw `/sse/<channel>` (`raw-sse`), and the HTTP API (`api`).
The iframe is read by a plain HTTP client: each `<script>p(envelope)</script>` chunk is what
a browser's frame would post to its parent (tests/integration/test_browser_transports.py
runs it in Chromium).

The actions: connect; subscribe (read a channel: a message published after it); publish (it
reaches a subscriber, or nobody); send (a direct message to the user reaches only the user's
sessions: clients cannot send one, the server does, `POST /api/send/<user>` with the API key;
at every door but the API the cell is about receiving it); history (a message published before,
through `since` or a raw SSE `Last-Event-ID`); presence (off in a namespace, refused without a
subscription).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Final

import pytest

from tests.door_clients import ENVELOPE_DOORS, Target
from tests.integration.auth_matrix_cells import (
    ALLOWED,
    Cell,
    Context,
    NotApplicable,
    connect_v1,
    history_v1,
    history_ws_v1,
    presence_v1,
    presence_ws_v1,
    publish_v1,
    publish_ws_v1,
    send_v1,
    subscribe_v1,
    subscribe_ws_v1,
)
from tests.integration.auth_matrix_deciders import (
    DECIDERS,
    Cases,
    handlers_hub,
    jwt_hub,
    jwt_server,
    proxy_server,
    running_asgi_hub,
    running_hub,
)
from tests.integration.auth_matrix_raw_cells import (
    connect_api,
    connect_raw_sse,
    connect_raw_ws,
    history_raw_sse,
    publish_api,
    publish_raw_ws,
    send_api,
    send_raw_sse,
    send_raw_ws,
    subscribe_raw_sse,
    subscribe_raw_ws,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ACTIONS: Final = ("connect", "subscribe", "publish", "send", "history", "presence")


def refused_once(cases: Cases) -> list[str]:
    return [ALLOWED, "refused"]


def reads(cases: Cases) -> list[str]:
    """Reading a channel: allowed, refused, and the decider's other refusals to read."""
    return [ALLOWED, "refused", *cases.read_refused]


def api_keys(cases: Cases) -> list[str]:
    return [ALLOWED, "no-key", "wrong-key"]


# Each kind of cell, and the cases it runs under a decider.
CONNECT: Final = Cell(connect_v1, lambda cases: [ALLOWED, *cases.connect_refused])
SUBSCRIBE: Final = Cell(subscribe_v1, reads)
PUBLISH: Final = Cell(publish_v1, refused_once)
SEND: Final = Cell(send_v1, lambda cases: [ALLOWED, *cases.send_refused])
HISTORY: Final = Cell(history_v1, reads)
PRESENCE: Final = Cell(presence_v1, lambda cases: [ALLOWED, "off", "unsubscribed"])

WS_V1_SUBSCRIBE: Final = Cell(subscribe_ws_v1, reads)
WS_V1_PUBLISH: Final = Cell(publish_ws_v1, refused_once)
WS_V1_HISTORY: Final = Cell(history_ws_v1, reads)
WS_V1_PRESENCE: Final = Cell(presence_ws_v1, PRESENCE.cases)

RAW_WS_CONNECT: Final = Cell(connect_raw_ws, CONNECT.cases)
RAW_WS_SUBSCRIBE: Final = Cell(subscribe_raw_ws, reads)
RAW_WS_PUBLISH: Final = Cell(publish_raw_ws, refused_once)
RAW_WS_SEND: Final = Cell(send_raw_ws, SEND.cases)

RAW_SSE_CONNECT: Final = Cell(connect_raw_sse, CONNECT.cases)
RAW_SSE_SUBSCRIBE: Final = Cell(subscribe_raw_sse, reads)
RAW_SSE_SEND: Final = Cell(send_raw_sse, SEND.cases)
RAW_SSE_HISTORY: Final = Cell(history_raw_sse, reads)

API_CONNECT: Final = Cell(connect_api, api_keys)
API_PUBLISH: Final = Cell(publish_api, lambda cases: [*api_keys(cases), "unknown-namespace"])
API_SEND: Final = Cell(send_api, api_keys)

# Why a cell does not exist.
NO_UPSTREAM: Final = NotApplicable(
    "raw /sse/<channel> has no upstream: a plain EventSource sends nothing"
)
NO_POSITION: Final = NotApplicable(
    "a raw WebSocket cannot name a position: history is read through pushwire.v1's `since` "
    "or raw SSE's Last-Event-ID"
)
NO_PRESENCE_REQUEST: Final = NotApplicable(
    "raw mode has no presence request (a raw client is a member others see, nothing more)"
)
API_WRITES_ONLY: Final = NotApplicable(
    "the HTTP API writes (publish, send) and reads no channel, history or presence"
)

#: The grid: door -> the cell of each action, in `ACTIONS` order.
V1_ROW: Final = (CONNECT, SUBSCRIBE, PUBLISH, SEND, HISTORY, PRESENCE)
GRID: Final[dict[str, tuple[Cell | NotApplicable, ...]]] = {
    **dict.fromkeys(("websocket", "sse", "stream", "iframe", "longpoll", "polling", "tcp"), V1_ROW),
    # door       connect          subscribe          publish          send
    #            history          presence
    "ws-v1": (CONNECT, WS_V1_SUBSCRIBE, WS_V1_PUBLISH, SEND,
              WS_V1_HISTORY, WS_V1_PRESENCE),
    "raw-ws": (RAW_WS_CONNECT, RAW_WS_SUBSCRIBE, RAW_WS_PUBLISH, RAW_WS_SEND,
               NO_POSITION, NO_PRESENCE_REQUEST),
    "raw-sse": (RAW_SSE_CONNECT, RAW_SSE_SUBSCRIBE, NO_UPSTREAM, RAW_SSE_SEND,
                RAW_SSE_HISTORY, NO_PRESENCE_REQUEST),
    "api": (API_CONNECT, API_WRITES_ONLY, API_PUBLISH, API_SEND,
            API_WRITES_ONLY, API_WRITES_ONLY),
}  # fmt: skip


def cells() -> Iterator[object]:
    """Every case of every cell under every decider, as pytest parameters."""
    for decider, make_cases in DECIDERS.items():
        cases = make_cases("")
        for door, row in GRID.items():
            if door == "tcp" and decider.endswith("-asgi"):
                continue  # an ASGI server has no raw TCP port
            for action, cell in zip(ACTIONS, row, strict=True):
                if isinstance(cell, Cell):
                    for case in cell.cases(cases):
                        yield pytest.param(
                            decider, door, cell, case, id=f"{decider}-{door}-{action}-{case}"
                        )


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    """One server per decider, shared by the module (each test has users and channels of
    its own)."""
    directory = tmp_path_factory.mktemp("auth-matrix")
    with (
        jwt_server(directory) as jwt,
        running_hub(jwt_hub) as jwt_in_process,
        running_hub(handlers_hub) as handlers,
        running_asgi_hub(jwt_hub) as jwt_asgi,
        running_asgi_hub(handlers_hub) as handlers_asgi,
        proxy_server(directory) as proxy,
    ):
        yield {
            "jwt": jwt,
            "jwt-hub": jwt_in_process,
            "handlers": handlers,
            "jwt-hub-asgi": jwt_asgi,
            "handlers-asgi": handlers_asgi,
            "proxy": proxy,
        }


_tags = itertools.count(1)


@pytest.mark.parametrize(("decider", "door", "cell", "case"), cells())
def test_cell(targets: dict[str, Target], decider: str, door: str, cell: Cell, case: str) -> None:
    tag = f"{next(_tags)}"
    context = Context(door, targets[decider], DECIDERS[decider](tag), tag)
    cell.run(context, case)


def test_the_grid_covers_every_door_and_action() -> None:
    assert list(GRID) == [*ENVELOPE_DOORS[:-1], "ws-v1", "raw-ws", "raw-sse", "api"]
    for door, row in GRID.items():
        assert len(row) == len(ACTIONS), door
        for cell in row:
            assert isinstance(cell, Cell) or cell.reason, door
