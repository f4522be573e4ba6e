"""Session routing without Redis: ids that name their node, the node-to-node payloads."""

from __future__ import annotations

import pytest

from pushwire.broker.base import Delivery
from pushwire.config import Config
from pushwire.core import Hub
from pushwire.routing import Router, decode_payload, encode_payload
from pushwire.transports.http_session import HttpSessions
from pushwire.transports.poll import Polls


class _Link:
    """A link that reaches nobody: enough for what needs no other node."""

    node = "0123456789ab"

    async def start(self, receive: object) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, node: str, payload: bytes) -> Delivery:
        return Delivery.DEAD


def _router() -> tuple[Hub, Router]:
    config = Config()
    hub = Hub(config=config)
    sessions = HttpSessions(hub)
    polls = Polls(hub, config, sessions, hub.clock)
    return hub, Router(hub, polls, sessions, _Link(), config)


def test_payloads_carry_a_json_header_and_the_body_as_is() -> None:
    payload = encode_payload({"op": "send", "id": 3}, b"line 1\nline 2\n\xff")
    assert decode_payload(payload) == ({"op": "send", "id": 3}, b"line 1\nline 2\n\xff")
    with pytest.raises(ValueError):
        decode_payload(b"[1]\n")
    with pytest.raises(ValueError):
        decode_payload(b"not json")


def test_a_router_names_its_node_in_every_session_id_and_finds_other_homes() -> None:
    hub, router = _router()
    assert hub.migration is router
    node, dot, rest = hub.new_session_id().partition(".")
    assert (node, dot, len(rest)) == ("0123456789ab", ".", 22)
    assert router.home_of(f"{node}.{rest}") is None  # this node's own
    assert router.home_of(f"ba9876543210.{rest}") == "ba9876543210"
    for foreign in ("", "plain", "xyz.abc", "BA9876543210.abc", "ba98765432.abc"):
        assert router.home_of(foreign) is None  # names no node: answered here, as unknown


def test_without_a_router_sessions_are_as_before() -> None:
    hub = Hub()
    assert hub.migration is None and "." not in hub.new_session_id()
