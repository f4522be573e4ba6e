"""The subscribe handler: the app's say on who joins what."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pushwire import Config, ConnectRequest, Forbidden, Hub, Identity, Session
from pushwire.auth.namespaces import OPEN, Namespace, Namespaces
from pushwire.core.identity import _KNOWN_CHANNELS
from pushwire.errors import BadRequest, LimitReached, UserIdTooLong
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


async def test_check_subscribe_refuses_a_known_channel_as_it_did_the_first_time() -> None:
    """A channel's rule is looked up once (then known): every check that depends on the
    session or the token still runs, each time, in the same order."""
    hub = Hub(
        config=Config(max_subscriptions=1),
        namespaces=[
            Namespace("", subscribe="anyone"),
            Namespace("signed", subscribe="authenticated"),
            Namespace("granted", subscribe="token"),
            Namespace("asked", subscribe="handler"),
            Namespace("dm", subscribe="anyone", users_in_name=True),
        ],
    )
    access = hub.access

    def opened(user: str | None) -> Session:
        return hub.lifecycle.open(RecordingTransport(RAW_FRAMING), user)

    ann, nobody = opened("ann"), opened(None)
    for _ in range(2):  # the first check looks the rule up, the second knows it
        assert access.check_subscribe(ann, "lobby") == ("lobby", access.namespaces.rule("x"))
        with pytest.raises(Forbidden, match="needs a signed-in user"):
            access.check_subscribe(nobody, "signed:room")
        assert access.check_subscribe(ann, "signed:room")[0] == "signed:room"
        with pytest.raises(Forbidden, match="needs a token that grants it"):
            access.check_subscribe(ann, "granted:room")
        with pytest.raises(Forbidden, match="the app decides, and has no rule"):
            access.check_subscribe(ann, "asked:room")
        with pytest.raises(Forbidden, match="is for the users its name lists"):
            access.check_subscribe(nobody, "dm:ann,bob")
        assert access.check_subscribe(ann, "dm:ann,bob")[0] == "dm:ann,bob"
        with pytest.raises(BadRequest, match='"token" must be a string'):
            access.check_subscribe(ann, "lobby", token=5)
        with pytest.raises(Forbidden, match="is private"):
            access.check_subscribe(ann, "$lobby")  # (never kept: its token is asked each time)
        with pytest.raises(Forbidden, match="no namespace 'nope'"):
            access.check_subscribe(ann, "nope:room")
        with pytest.raises(BadRequest, match="invalid channel name"):
            access.check_subscribe(ann, "bad name")
    assert "lobby" in access._known and "$lobby" not in access._known
    hub.channels.subscribe(ann, "lobby")
    with pytest.raises(LimitReached, match=r"\(1 channels\)"):
        access.check_subscribe(ann, "signed:room")  # known, and the session is full
    assert access.check_subscribe(ann, "lobby")[0] == "lobby"  # (in it already)

    # Namespaces replaced: what was known under the old ones is forgotten.
    access.namespaces = Namespaces([Namespace("other")], OPEN)
    with pytest.raises(Forbidden, match="no namespace ''"):
        access.check_subscribe(nobody, "lobby")


async def test_check_subscribe_keeps_a_bounded_number_of_channels() -> None:
    hub = Hub()
    session = hub.lifecycle.open(RecordingTransport(RAW_FRAMING))
    for number in range(_KNOWN_CHANNELS + 10):
        hub.access.check_subscribe(session, f"room{number}")
    assert 0 < len(hub.access._known) <= _KNOWN_CHANNELS


def test_subscribe_hooked_follows_the_subscribe_handler() -> None:
    hub = Hub()

    def hooked() -> bool:
        return hub.access.subscribe_hooked

    assert not hooked()

    @hub.on_subscribe
    def anyone(session: Session, channel: str) -> bool:
        return True

    assert hooked() and hub.access.subscribe_handler is anyone
    hub.access.subscribe_handler = None
    assert not hooked()
