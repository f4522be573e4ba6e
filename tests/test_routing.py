"""Session routing without Redis: ids that name their node, the node-to-node payloads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pushwire.broker.base import Delivery
from pushwire.config import Config
from pushwire.core import Hub, Session
from pushwire.routing import Router, decode_payload, encode_payload
from pushwire.transports.http_session import HttpSessions
from pushwire.transports.poll import Polls
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING
from tests.helpers import RecordingReceiver, RecordingTransport


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


class _Network:
    """Nodes' links delivering to each other in this process; a request whose `op` is in
    `held` waits (`holding` is set) until `release` is set."""

    def __init__(self, *held: str) -> None:
        self.receivers: dict[str, Callable[[bytes], None]] = {}
        self.held = held
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    def link(self, node: str) -> _PairedLink:
        return _PairedLink(self, node)


class _PairedLink:
    def __init__(self, network: _Network, node: str) -> None:
        self.network = network
        self.node = node

    async def start(self, receive: Callable[[bytes], None]) -> None:
        self.network.receivers[self.node] = receive

    async def close(self) -> None:
        pass

    async def send(self, node: str, payload: bytes) -> Delivery:
        network = self.network
        if decode_payload(payload)[0].get("op") in network.held:
            network.holding.set()
            await network.release.wait()
        network.receivers[node](payload)
        return Delivery.DELIVERED


async def _nodes(network: _Network) -> tuple[Router, Router]:
    routers = []
    for node in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
        config = Config()
        hub = Hub(config=config)
        sessions = HttpSessions(hub)
        polls = Polls(hub, config, sessions, hub.clock)
        router = Router(hub, polls, sessions, network.link(node), config)
        await router.start()
        routers.append(router)
    return routers[0], routers[1]


def _connection() -> RecordingTransport:
    transport = RecordingTransport(ENVELOPE_FRAMING)
    transport.receiver = RecordingReceiver()  # open: a receiver reads it
    return transport


async def _stale_take_over(
    network: _Network, home: Router, new: Router
) -> tuple[Session, asyncio.Task[Session | None], RecordingTransport]:
    """A session of `home` whose client dropped; a hello resuming it at `new` held at the
    hand-over step the network holds: the session, that take-over, its connection."""
    session = home.hub.lifecycle.open(
        _connection(), "ana", resumable=True, endpoint="e", session_id=home._new_session_id()
    )
    assert session.transport is not None
    home.hub.lifecycle.detach(session, session.transport, 1006, "dropped", final=False)
    stale = _connection()
    taking = asyncio.create_task(new.take_over(session.id, session.secret, "e", stale))
    await network.holding.wait()
    return session, taking, stale


async def test_a_client_back_home_meanwhile_keeps_its_connection() -> None:
    """Issue 14, item 4 (found by the long chaos run, torn answers): a hello the client gave
    up on, still between the hand-over's two questions when the client resumed its session
    at the home node, must not take it from there (4004 closed the live connection and the
    client stopped for good, its messages lost silently)."""
    network = _Network("handover")
    home, new = await _nodes(network)
    session, taking, _ = await _stale_take_over(network, home, new)
    live = _connection()
    assert home.hub.lifecycle.resume(session.id, session.secret, "e", live) is session
    network.release.set()
    assert await taking is None  # counts as expired there: its connection is gone anyway
    assert live.closed is None
    assert session.transport is live and not session.closed


async def test_a_hello_whose_connection_ended_takes_nothing_over() -> None:
    network = _Network("user")
    home, new = await _nodes(network)
    session, taking, stale = await _stale_take_over(network, home, new)
    stale.receiver = None  # its client gave up on it
    network.release.set()
    assert await taking is None
    assert home.hub.lifecycle.claim(session.id, session.secret, "e") is session


async def test_a_hand_over_still_moves_a_session_whose_connection_died_unseen() -> None:
    """The check above refuses only a session attached again since the first question: one
    still attached to the connection its client lost (the home has not noticed) moves."""
    network = _Network("handover")
    home, new = await _nodes(network)
    dead = _connection()
    session = home.hub.lifecycle.open(
        dead, "ana", resumable=True, endpoint="e", session_id=home._new_session_id()
    )
    hello = _connection()
    taking = asyncio.create_task(new.take_over(session.id, session.secret, "e", hello))
    await network.holding.wait()
    network.release.set()
    moved = await taking
    assert moved is not None and moved.transport is hello
    assert dead.closed is not None and dead.closed[0] == 4004
