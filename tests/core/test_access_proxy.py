"""The backend proxy on `Access`'s one path: who asks it, when, and in which order with the
tokens, the namespace rules and the app's handlers. The backend here is a stand-in at the
process edge (the `Proxy` protocol); tests/auth/test_proxy.py and
tests/integration/test_proxy.py ask a real one over HTTP."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from pushwire import Config, ConnectRequest, Forbidden, Hub, Session
from pushwire.auth.namespaces import Namespace
from pushwire.auth.proxy import Admission
from pushwire.errors import BackendUnavailable, Unauthorized
from pushwire.message import Data
from pushwire.transports.websocket.framing import RAW_FRAMING
from tests.helpers import RecordingTransport

SECRET = "the secret of the tokens in these tests, long enough"


@dataclass
class Backend:
    """Answers as told, and remembers what it was asked."""

    connects: bool = True
    subscribes: bool = True
    publishes: bool = True
    admission: Admission = field(
        default_factory=lambda: Admission("alice", {"name": "Alice"}, frozenset(), None)
    )
    refusal: Exception | None = None
    asked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def forwarded(self, headers: Sequence[tuple[str, str]]) -> Mapping[str, str]:
        return {name: value for name, value in headers if name == "cookie"}

    async def connect(self, **question: Any) -> Admission:
        self._ask("connect", question)
        return self.admission

    async def subscribe(self, **question: Any) -> None:
        self._ask("subscribe", question)

    async def publish(self, *, user: str | None, channel: str, data: Data) -> None:
        self._ask("publish", {"user": user, "channel": channel, "data": data})

    async def close(self) -> None:
        pass

    def _ask(self, decision: str, question: dict[str, Any]) -> None:
        self.asked.append((decision, question))
        if self.refusal is not None:
            raise self.refusal


def request(token: str | None = None, user: str | None = "mallory") -> ConnectRequest:
    headers = [("cookie", "session=s1"), ("x-secret", "never passed on")]
    return ConnectRequest("/pushwire", "websocket", headers, {}, user=user, token=token)


def session_of(hub: Hub, user: str | None = "alice") -> Session:
    return hub.lifecycle.open(RecordingTransport(RAW_FRAMING), user)


async def test_the_connect_proxy_says_who_connects_not_the_claim() -> None:
    backend = Backend()
    hub = Hub(proxy=backend)
    access = hub.access
    assert access.authenticating and access.connect_hooked
    identity = await access.connect(request(token="opaque"))
    assert (identity.user, identity.info) == ("alice", {"name": "Alice"})
    assert backend.asked == [
        (
            "connect",
            {
                "transport": "websocket",
                "path": "/pushwire",
                "remote": None,
                "user": "mallory",
                "token": "opaque",
                "headers": {"cookie": "session=s1"},
            },
        )
    ]
    # Authenticating: without namespaces, every channel needs a signed-in user.
    with pytest.raises(Forbidden, match="needs a signed-in user"):
        access.check_subscribe(session_of(hub, None), "lobby")


async def test_a_refusal_of_the_connect_proxy_is_logged_and_raised() -> None:
    hub = Hub(proxy=Backend(refusal=Unauthorized("sign in first")))
    with pytest.raises(Unauthorized, match=r"^sign in first$"):
        await hub.access.connect(request())
    hub = Hub(proxy=Backend(refusal=BackendUnavailable("the app's backend answered 500")))
    with pytest.raises(BackendUnavailable):
        await hub.access.connect(request())
    assert hub.access.refusals.count == 1


async def test_with_tokens_too_a_token_is_a_jwt_and_the_backend_is_asked_without_one() -> None:
    backend = Backend()
    hub = Hub(config=Config(jwt_secret=SECRET), proxy=backend)
    token = jwt.encode({"sub": "carol", "exp": time.time() + 60}, SECRET, "HS256")
    assert (await hub.access.connect(request(token=token))).user == "carol"
    with pytest.raises(Unauthorized, match="invalid token"):
        await hub.access.connect(request(token="not a jwt"))
    assert backend.asked == []
    assert (await hub.access.connect(request())).user == "alice"
    assert [decision for decision, _ in backend.asked] == ["connect"]


async def test_the_apps_connect_handler_runs_after_the_proxy_and_sees_what_it_proved() -> None:
    hub = Hub(proxy=Backend(admission=Admission("alice", {"name": "Alice"}, frozenset(), 99.0)))
    seen: list[ConnectRequest] = []

    @hub.on_connect
    def identify(request: ConnectRequest) -> dict[str, Any]:
        seen.append(request)
        return {"user": request.user, "info": {**request.info, "via": request.transport}}

    identity = await hub.access.connect(request())
    assert (seen[0].user, seen[0].info) == ("alice", {"name": "Alice"})
    assert identity.info == {"name": "Alice", "via": "websocket"}
    assert identity.expires == 99.0


async def test_the_subscribe_proxy_is_asked_after_the_rule_with_the_connections_headers() -> None:
    backend = Backend(connects=False, publishes=False)
    hub = Hub(namespaces=[Namespace("chat", subscribe="handler")], proxy=backend)
    access = hub.access
    assert not access.authenticating and access.subscribe_hooked and not access.publish_hooked
    identity = await access.connect(request())
    assert identity.forwarded == {"cookie": "session=s1"}
    assert "s1" not in repr(identity)
    session = session_of(hub, identity.user)
    session.forwarded = identity.forwarded
    # The rule first: an unknown namespace is refused without asking the backend.
    with pytest.raises(Forbidden, match="no namespace 'news'"):
        access.check_subscribe(session, "news:today")
    # `subscribe = "handler"`: the proxy is the app's say.
    channel, _ = access.check_subscribe(session, "chat:lobby")
    await access.subscribe_hooks(session, channel)
    assert backend.asked == [
        (
            "subscribe",
            {
                "user": "mallory",
                "channel": "chat:lobby",
                "info": {},
                "headers": {"cookie": "session=s1"},
            },
        )
    ]


async def test_the_apps_subscribe_handler_runs_only_after_the_proxy_allowed() -> None:
    backend = Backend(connects=False, publishes=False)
    hub = Hub(proxy=backend)
    calls: list[str] = []

    @hub.on_subscribe
    def members_only(session: Session, channel: str) -> bool:
        calls.append(channel)
        return channel != "closed"

    session = session_of(hub)
    await hub.access.subscribe_hooks(session, "open")
    with pytest.raises(Forbidden, match=r"^subscription to 'closed' refused$"):
        await hub.access.subscribe_hooks(session, "closed")
    backend.refusal = Forbidden("not a member")
    with pytest.raises(Forbidden, match=r"^not a member$"):
        await hub.access.subscribe_hooks(session, "open")
    assert calls == ["open", "closed"]
    assert hub.access.refusals.count == 2


async def test_without_the_subscribe_proxy_a_handler_rule_still_needs_a_handler() -> None:
    hub = Hub(namespaces=[Namespace("chat", subscribe="handler")], proxy=Backend(subscribes=False))
    with pytest.raises(Forbidden, match="the app decides, and has no rule"):
        hub.access.check_subscribe(session_of(hub), "chat:lobby")


async def test_the_publish_proxy_is_asked_before_the_apps_handler() -> None:
    backend = Backend(connects=False, subscribes=False)
    hub = Hub(proxy=backend)
    assert hub.access.publish_hooked
    calls: list[Data] = []

    @hub.on_publish
    def record(session: Session, channel: str, data: Data) -> None:
        calls.append(data)

    session = session_of(hub)
    await hub.access.publish_hooks(session, "lobby", b"\x01")
    backend.refusal = BackendUnavailable("the app's backend is busy")
    with pytest.raises(BackendUnavailable):
        await hub.access.publish_hooks(session, "lobby", "second")
    assert calls == [b"\x01"]
    assert backend.asked[0] == ("publish", {"user": "alice", "channel": "lobby", "data": b"\x01"})
    assert hub.access.refusals.count == 1


def test_a_hub_whose_config_names_a_proxy_needs_one() -> None:
    with pytest.raises(ValueError, match="the config names a backend proxy"):
        Hub(config=Config(connect_proxy="http://127.0.0.1:9/connect"))
