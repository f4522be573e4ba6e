"""A subscriber that stops reading is closed with 4001; the others get everything."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from tests.metrics_helpers import eventually, scrape
from tests.servers import ServerFactory
from tests.wire_clients import RawClient, client_frame

pytestmark = pytest.mark.integration

MESSAGE = "x" * 1000
BATCH = 100
COUNT = 12000  # 12 MB: past what loopback socket buffers hold, plus max_write_buffer


async def test_a_subscriber_that_stops_reading_is_closed_with_4001(
    server_factory: ServerFactory,
) -> None:
    # close_timeout: time for the slow one to read its backlog and find the Close at its end.
    server = server_factory("--set", "max_write_buffer=65536", "--set", "close_timeout=60")
    slow = RawClient(server, "/ws/room")
    async with (
        connect(server.ws_url("/ws/room")) as publisher,
        connect(server.ws_url("/ws/room"), max_queue=None) as reader,
    ):
        # Lockstep batches: the reader keeps up, the slow subscriber never reads.
        for start in range(0, COUNT, BATCH):
            for i in range(start, start + BATCH):
                await publisher.send(f"{i} {MESSAGE}")
            for i in range(start, start + BATCH):
                assert await asyncio.wait_for(reader.recv(), 10) == f"{i} {MESSAGE}"
    # Now read what the slow one was sent: messages in order, then a Close with 4001.
    code, reason = await asyncio.to_thread(slow.expect_close)
    assert code == 4001
    assert reason == "slow consumer (> 65536 bytes queued)"
    # The Close was the last frame (RFC 6455 5.5.1), though messages went on being published:
    # once it is answered, the server ends the connection and nothing follows it.
    slow.send(client_frame(0x8, (4001).to_bytes(2, "big")))
    assert await asyncio.to_thread(slow.read_to_end) == b""
    slow.close()

    async def counted() -> bool:  # once its connection's end reached the session
        return (await scrape(server))["pushwire_slow_consumer_closes_total"] == 1

    await eventually(counted, "the slow consumer counted in /metrics")
