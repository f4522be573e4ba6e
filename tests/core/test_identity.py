"""The subscribe handler: the app's say on who joins what."""

from __future__ import annotations

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
