"""What a connecting client says and who it is: frozen dataclasses, made without their
generated `__init__` (`slot_setters`)."""

from __future__ import annotations

import dataclasses

import pytest

from pushwire import ConnectRequest, Identity
from pushwire.core.connecting import new_identity, new_request


def test_a_connect_request_is_a_frozen_dataclass_with_its_defaults() -> None:
    request = ConnectRequest("/ws/room", "websocket", [("host", "h")], {"user": "ann"})
    assert (request.user, request.token, request.remote, request.info) == (None, None, None, {})
    assert request.info is not ConnectRequest("/", "sse", [], {}).info  # a dict each
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.user = "bob"  # type: ignore[misc]
    moved = dataclasses.replace(request, user="ann", info={"a": 1})
    expected = ConnectRequest("/ws/room", "websocket", [("host", "h")], {"user": "ann"}, "ann")
    assert moved == dataclasses.replace(expected, info={"a": 1})
    assert repr(moved).startswith("ConnectRequest(path='/ws/room', transport='websocket'")


def test_an_identity_is_a_frozen_dataclass_whose_forwarded_headers_are_not_compared() -> None:
    identity = Identity("ann")
    assert (identity.info, identity.grants, identity.expires, identity.forwarded) == (
        {},
        frozenset(),
        None,
        {},
    )
    assert identity.info is not Identity("ann").info
    assert Identity("ann", forwarded={"x": "1"}) == identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.user = "bob"  # type: ignore[misc]
    assert dataclasses.replace(identity, expires=9.0) == Identity("ann", expires=9.0)
    assert "forwarded" not in repr(Identity("ann", forwarded={"cookie": "secret"}))


def test_the_handshake_factories_make_the_same_frozen_objects_as_the_constructors() -> None:
    headers, query = [("host", "h")], {"user": "ann"}
    request = new_request("/ws/room", "websocket", headers, query, "ann", "t", "1.2.3.4:5")
    expected = ConnectRequest("/ws/room", "websocket", headers, query, "ann", "t", "1.2.3.4:5")
    assert type(request) is ConnectRequest
    assert request == expected and repr(request) == repr(expected)
    assert request.info == {} and request.info is not new_request("/", "sse", [], {}).info
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.user = "bob"  # type: ignore[misc]
    assert dataclasses.replace(request, user="bob") == dataclasses.replace(expected, user="bob")

    made = new_identity("ann", {"a": 1}, frozenset({"c"}), 9.0, {"x": "1"})
    assert type(made) is Identity
    assert made == Identity("ann", {"a": 1}, frozenset({"c"}), 9.0)
    assert made.forwarded == {"x": "1"}
    assert hash(new_identity("ann", {}, frozenset(), None, {}).grants) == hash(frozenset())
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.user = "bob"  # type: ignore[misc]
    # Every slot is written (reading an unwritten one raises): a field added to the classes
    # must be added to the factories.
    for obj in (request, made):
        assert [getattr(obj, field.name) for field in dataclasses.fields(obj)]
