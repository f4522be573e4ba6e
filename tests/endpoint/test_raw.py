"""Raw mode's handler driven without a socket: when its session opens, what it holds idle."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

import pytest

from pushwire import Config, Hub
from pushwire.core import ConnectRequest, Identity
from pushwire.endpoint import ClientInfo, Endpoint, RawHandler
from pushwire.errors import Forbidden
from pushwire.transports.stream import NDJSON_FRAMING
from tests.helpers import RecordingTransport


def _subscriber(hub: Hub, user: str = "ann") -> tuple[RawHandler, RecordingTransport]:
    transport = RecordingTransport(NDJSON_FRAMING)
    client = ClientInfo("/ws/room", [], {"user": user}, None, "192.0.2.1", handshaken=True)
    return RawHandler(hub, Endpoint("channel", "room"), transport, client), transport


async def test_a_connect_handler_that_answers_at_once_opens_the_session_inline() -> None:
    hub = Hub(config=Config())

    @hub.on_connect
    def identify(request: ConnectRequest) -> dict[str, Any]:
        return {"user": request.user, "info": {"via": request.transport}}

    handler, transport = _subscriber(hub)
    assert handler.open() is None  # nothing to await: no task, no paused read
    assert handler.session is not None and handler.session.user == "ann"
    assert dict(handler.session.info) == {"via": "recording"}
    assert hub.channels.subscriber_count("room") == 1
    assert transport.closed is None


async def test_a_connect_handler_that_must_be_awaited_opens_the_session_once_awaited() -> None:
    hub = Hub(config=Config())

    @hub.on_connect
    async def identify(request: ConnectRequest) -> str | None:
        await asyncio.sleep(0)
        return request.user

    handler, _ = _subscriber(hub)
    opening = handler.open()
    assert opening is not None
    assert hub.channels.subscriber_count("room") == 0  # not before the handler answered
    await opening
    assert handler.session is not None and handler.session.user == "ann"
    assert hub.channels.subscriber_count("room") == 1


async def test_a_connect_handler_refusing_at_once_closes_with_the_refusal() -> None:
    hub = Hub(config=Config())

    @hub.on_connect
    def identify(request: ConnectRequest) -> None:
        raise Forbidden("not today")

    handler, transport = _subscriber(hub)
    assert handler.open() is None
    assert transport.closed == (4101, "not today")
    assert handler.session is None and hub.channels.subscriber_count("room") == 0


async def test_a_connect_handler_answering_nonsense_at_once_closes_1011() -> None:
    hub = Hub(config=Config())

    @hub.on_connect
    def identify(request: ConnectRequest) -> int:
        return 42

    handler, transport = _subscriber(hub)
    assert handler.open() is None
    assert transport.closed == (1011, "internal error")
    assert hub.channels.subscriber_count("room") == 0


async def test_an_idle_raw_subscriber_holds_no_rate_buckets_and_no_resume_secret() -> None:
    # Per subscriber: handler, session, subscription, presence entry. Before issue 18's cut
    # (rate buckets made at once, a resume secret, per-session empty dicts, a dict of the
    # channels it is present in, a tuple per presence entry, a dict per user for its
    # direct messages) it was 2,208;
    # after, 1,308 (CPython 3.11; a RecordingTransport and ClientInfo included).
    hub = Hub(config=Config())
    warm = [_subscriber(hub, f"warm{i}") for i in range(50)]
    for handler, _ in warm:
        handler.open()
    gc.collect()
    n = 500
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [_subscriber(hub, f"user{i}") for i in range(n)]
        for handler, _ in held:
            handler.open()
        gc.collect()
        per_subscriber = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert hub.channels.subscriber_count("room") == n + 50
    assert per_subscriber < 1_450, per_subscriber


async def test_a_raw_subscribers_token_expiry_is_watched_only_when_it_has_one() -> None:
    hub = Hub(config=Config())
    expires: list[float | None] = [None, time.time() + 60]

    @hub.on_connect
    def identify(request: ConnectRequest) -> Identity:
        return Identity(request.user, expires=expires.pop())

    expiring, _ = _subscriber(hub, "ann")
    assert expiring.open() is None and expiring.session is not None
    assert expiring.session.token_expires == pytest.approx(time.time() + 60, abs=5)
    assert hub.expiry.remaining(expiring.session) is not None and hub.expiry.watched == 1
    lasting, _ = _subscriber(hub, "bob")
    assert lasting.open() is None and lasting.session is not None
    assert lasting.session.token_expires is None and hub.expiry.remaining(lasting.session) is None
    assert hub.expiry.watched == 1
