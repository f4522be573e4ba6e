"""Direct messages through RedisBroker against a real redis-server: two hubs on one Redis play
two nodes (the end-to-end tests with pushwire processes are in
tests/integration/test_direct_scaleout.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis import Redis as BlockingRedis
from redis.asyncio import Redis

from pushwire import Hub
from pushwire.core.transport import Framing
from pushwire.endpoint import ClientInfo, Endpoint, EnvelopeHandler
from pushwire.errors import Unavailable
from pushwire.message import Position
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING, RAW_FRAMING
from tests.helpers import RecordingTransport
from tests.redis_helpers import WAIT, Maker, RedisBrokers, RedisServer, numsub

pytestmark = pytest.mark.integration


@pytest.fixture
def hubs(redis_brokers: RedisBrokers) -> Maker[Hub]:
    """Make hubs on started Redis brokers of `redis_server`; all closed at the end."""
    return redis_brokers.maker(Hub)


class Inbox(RecordingTransport):
    """A recording transport that says when something was written."""

    def __init__(self, framing: Framing) -> None:
        super().__init__(framing)
        self.arrived = asyncio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.arrived.set()

    async def wait_for(self, count: int) -> list[bytes]:
        async with asyncio.timeout(WAIT):
            while len(self.written) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.written


def envelope(frame: bytes) -> dict[str, Any]:
    """The JSON of a server-to-client text frame under 64 KiB (RFC 6455 5.2)."""
    assert frame[0] == 0x81 and frame[1] <= 126
    decoded = orjson.loads(frame[4:] if frame[1] == 126 else frame[2:])
    assert isinstance(decoded, dict)
    return decoded


async def test_send_reaches_sessions_of_the_user_on_both_hubs_once_through_redis(
    hubs: Callable[..., Any], redis: Redis
) -> None:
    near, far = await hubs(), await hubs()
    mine, theirs = Inbox(RAW_FRAMING), Inbox(RAW_FRAMING)
    await near.direct_messages.prepare_user("ann")
    near.lifecycle.open(mine, "ann")
    await far.direct_messages.prepare_user("ann")
    far.lifecycle.open(theirs, "ann")
    assert await numsub(redis, "pushwire:user:ann") == 2

    # Not written here at once: it comes back from Redis, like to every other node.
    assert near.send("ann", "one") == 1
    assert mine.written == []
    assert (await near.send_everywhere("ann", b"\x00two")).receivers == 2
    for inbox in (mine, theirs):
        assert await inbox.wait_for(2) == [b"\x81\x03one", b"\x82\x04\x00two"]
    assert (await far.send_everywhere("nobody", "void")).receivers == 0
    assert (await far.send_everywhere("ann", "three")).receivers == 2
    for inbox in (mine, theirs):
        assert (await inbox.wait_for(3))[2:] == [b"\x81\x05three"]  # nothing else came first


async def test_one_subscription_per_user_per_hub_dropped_with_the_last_session(
    hubs: Callable[..., Any], redis: Redis
) -> None:
    hub = await hubs()
    sessions = []
    for _ in range(3):
        await hub.direct_messages.prepare_user("ann")
        sessions.append(hub.lifecycle.open(RecordingTransport(RAW_FRAMING), "ann"))
    assert await numsub(redis, "pushwire:user:ann") == 1
    for session in sessions[:2]:
        hub.close_session(session, 1000, "bye")
    assert (await hub.send_everywhere("ann", "still")).receivers == 1
    hub.close_session(sessions[2], 1000, "bye")
    async with asyncio.timeout(WAIT):
        while await numsub(redis, "pushwire:user:ann"):
            await asyncio.sleep(0.01)  # the UNSUBSCRIBE is on its way
    assert (await hub.send_everywhere("ann", "gone")).receivers == 0
    # A session opening without `prepare_user` (a raw session) subscribes in the background.
    hub.lifecycle.open(RecordingTransport(RAW_FRAMING), "ann")
    async with asyncio.timeout(WAIT):
        while not await numsub(redis, "pushwire:user:ann"):
            await asyncio.sleep(0.01)


async def test_the_user_is_listened_to_before_the_welcome_goes_out(
    hubs: Callable[..., Any], redis_server: RedisServer
) -> None:
    hub = await hubs()
    blocking = BlockingRedis.from_url(redis_server.url)
    listened_at_welcome: list[int] = []

    class Watching(Inbox):
        def write(self, data: bytes) -> None:
            if b'"welcome"' in data:
                # What Redis knows at the instant the welcome is written (blocking on
                # purpose: nothing else on this loop may run in between).
                [(_, count)] = blocking.pubsub_numsub("pushwire:user:ann")
                listened_at_welcome.append(int(count))
            super().write(data)

    transport = Watching(ENVELOPE_FRAMING)
    info = ClientInfo("/pushwire", [], {}, None)
    handler = EnvelopeHandler(hub, Endpoint("general"), transport, info)
    try:
        handler.receive(orjson.dumps({"type": "hello", "user": "ann"}).decode())
        welcome = envelope((await transport.wait_for(1))[0])
        assert welcome["type"] == "welcome"
        assert listened_at_welcome == [1]
        assert welcome["inbox"]["offset"] == 0
        assert (await hub.send_everywhere("ann", "right after")).receivers == 1
        direct = envelope((await transport.wait_for(2))[1])
        assert (direct["type"], direct["offset"], direct["data"]) == ("message", 1, "right after")
    finally:
        blocking.close()


async def test_a_send_while_redis_is_down_is_unavailable(
    hubs: Callable[..., Any], redis_server: RedisServer
) -> None:
    hub = await hubs()
    await hub.direct_messages.prepare_user("ann")
    hub.lifecycle.open(RecordingTransport(RAW_FRAMING), "ann")
    redis_server.stop()
    with pytest.raises(Unavailable):
        async with asyncio.timeout(WAIT):
            await hub.send_everywhere("ann", "lost")
    with pytest.raises(Unavailable):  # refused at once now that the outage is known
        async with asyncio.timeout(1):
            await hub.send_everywhere("ann", "lost again")
    assert hub.send("ann", "dropped, logged") == 1  # fire and forget: no exception


async def test_the_inbox_in_redis_keeps_its_count_and_byte_bounds_and_says_what_it_lost(
    hubs: Callable[..., Any],
) -> None:
    counted = await hubs(inbox_size=3)
    sent = [await counted.send_everywhere("offline", f"m{i}") for i in range(1, 6)]
    epoch = sent[0].message.epoch
    assert [s.message.offset for s in sent] == [1, 2, 3, 4, 5]
    assert {s.receivers for s in sent} == {0}
    history = await counted.direct.inbox_history("offline", Position(epoch, 0))
    assert not history.complete and history.position == Position(epoch, 5)
    assert [m.data for m in history.messages] == ["m3", "m4", "m5"]
    assert (await counted.direct.inbox_history("offline", Position(epoch, 2))).complete

    sized = await hubs(inbox_bytes=10)
    epoch = (await sized.send_everywhere("bytes", "12345")).message.epoch
    await sized.send_everywhere("bytes", "67890")  # 10 bytes: both kept
    kept = await sized.direct.inbox_history("bytes", Position(epoch, 0))
    assert kept.complete and [m.offset for m in kept.messages] == [1, 2]
    await sized.send_everywhere("bytes", "x")  # 11 bytes: the first goes
    trimmed = await sized.direct.inbox_history("bytes", Position(epoch, 0))
    assert not trimmed.complete and [m.offset for m in trimmed.messages] == [2, 3]


async def test_a_session_gets_the_directs_its_node_missed_while_its_subscription_was_down(
    hubs: Callable[..., Any], redis: Redis
) -> None:
    near, far = await hubs(), await hubs()
    transport = Inbox(ENVELOPE_FRAMING)
    await far.direct_messages.prepare_user("ann")
    session = far.lifecycle.open(transport, "ann", resumable=True)
    await far.direct_messages.recover(session, None)
    assert (await near.send_everywhere("ann", "before")).receivers == 1
    await transport.wait_for(1)
    await redis.client_kill_filter(_type="pubsub")  # far's subscription to ann is lost
    sent = [(await near.send_everywhere("ann", f"during {i}")).receivers for i in range(20)]
    assert 0 in sent  # some were published while far was not listening
    frames = await transport.wait_for(21)
    got = [envelope(frame) for frame in frames]
    assert [(e["offset"], e["data"]) for e in got] == [
        (1, "before"),
        *((i + 2, f"during {i}") for i in range(20)),
    ]


async def test_a_hello_while_redis_is_down_is_welcomed_and_recovered_once_it_is_back(
    hubs: Callable[..., Any], redis_server: RedisServer
) -> None:
    hub = await hubs()
    redis_server.stop()
    transport = Inbox(ENVELOPE_FRAMING)
    handler = EnvelopeHandler(hub, Endpoint("general"), transport, ClientInfo("/", [], {}, None))
    handler.receive(orjson.dumps({"type": "hello", "user": "ann"}).decode())
    welcome, error = (envelope(frame) for frame in await transport.wait_for(2))
    assert welcome["type"] == "welcome" and "inbox" not in welcome
    assert (error["type"], error["code"]) == ("error", "unavailable")
    assert error["message"].startswith("direct messages delayed: ")
    redis_server.start()
    async with asyncio.timeout(WAIT):
        while True:  # until the node listens to ann again and the inbox was read
            try:
                sent = await hub.send_everywhere("ann", "back")
            except Unavailable:
                sent = None
            if sent is not None and sent.receivers == 1:
                break
            await asyncio.sleep(0.05)
    frames = await transport.wait_for(3)
    last = envelope(frames[-1])
    assert (last["type"], last["data"]) == ("message", "back")
