"""The subscribe handler: the app's say on who joins what."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pushwire import Config, ConnectRequest, Forbidden, Hub, Identity, Session
from pushwire.errors import UserIdTooLong
from pushwire.transports.websocket.framing import RAW_FRAMING
from tests.helpers import RecordingTransport


async def test_the_subscribe_handler_may_refuse_a_channel() -> None:
    hub = Hub()

    @hub.on_subscribe
    async def public_only(session: Session, channel: str) -> bool:
        return channel.startswith("public.")

    session = hub.lifecycle.open(RecordingTransport(RAW_FRAMING))
    await hub.access.authorize_subscribe(session, "public.news")
    with pytest.raises(Forbidden, match=r"^subscription to 'secret' refused$") as refused:
        await hub.access.authorize_subscribe(session, "secret")
    assert refused.value.close_code == 4101


async def test_without_a_connect_handler_a_client_is_who_its_request_says() -> None:
    hub = Hub()
    assert not hub.has_connect_handler
    request = ConnectRequest("/pushwire", "sse", [], {}, user="bob")
    assert await hub.access.identify(request) == Identity("bob")


def test_an_open_servers_connect_handler_decides_but_the_claimed_user_is_still_bounded() -> None:
    hub = Hub(config=Config(max_user_id=8))

    @hub.on_connect
    def everyone_is_ana(request: ConnectRequest) -> dict[str, object]:
        return {"user": "ana", "info": {"claimed": request.user}}

    claim = ConnectRequest("/ws/room", "websocket", [], {}, user="bob")
    identity = hub.access.connect_started(claim)
    assert identity == Identity("ana", {"claimed": "bob"})
    assert isinstance(identity, Identity) and identity.grants == frozenset()
    assert identity.expires is None and not identity.forwarded
    too_long = ConnectRequest("/ws/room", "websocket", [], {}, user="b" * 9)
    with pytest.raises(UserIdTooLong, match=r"\(9 > 8 characters\)"):
        hub.access.connect_started(too_long)


def test_a_connect_handlers_answer_is_still_checked_on_the_inline_path() -> None:
    hub = Hub(config=Config(max_user_id=8))
    answers: list[object] = []

    @hub.on_connect
    def answer(request: ConnectRequest) -> object:
        return answers.pop()

    def connected(result: object) -> object:
        answers.append(result)
        return hub.access.connect_started(ConnectRequest("/ws/room", "websocket", [], {}))

    assert connected({"user": "ann"}) == Identity("ann", {})
    first, second = connected({"user": "ann"}), connected({"user": "ann"})
    assert isinstance(first, Identity) and isinstance(second, Identity)
    assert first.info == {} and first.info is not second.info  # each its own, as before
    assert connected(MappingProxyType({"user": "bo", "info": {"a": 1}})) == Identity("bo", {"a": 1})
    assert connected("cy") == Identity("cy") and connected(None) == Identity(None)
    with pytest.raises(TypeError, match=r"^connect handler must return str, None, a mapping"):
        connected(42)
    with pytest.raises(TypeError, match=r"^connect handler's user must be str or None"):
        connected({"user": 5})
    with pytest.raises(TypeError, match=r"^connect handler's info must be a mapping"):
        connected({"user": "ann", "info": "x"})
    with pytest.raises(UserIdTooLong, match=r"\(9 > 8 characters\)"):
        connected({"user": "d" * 9})
