"""The chaos harness's own parts that the long runs lean on: publishers that pipeline their
publishes on one keep-alive connection (and keep their order), and a subscriber in a process
of its own that records exactly what an in-process one does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.chaos.cluster import http_post
from tests.chaos.ledger import Got, Hole, PublishLog
from tests.chaos.proxy import FaultProxy
from tests.chaos.publishers import HttpPublisher
from tests.chaos.remote import RemoteSubscriber
from tests.chaos.subscribers import PythonSubscriber
from tests.servers import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy(server: ServerProcess) -> AsyncIterator[FaultProxy]:
    front = FaultProxy([("127.0.0.1", server.port)])
    await front.start()
    try:
        yield front
    finally:
        await front.stop()


async def until(condition: object, what: str, timeout: float = 30.0) -> None:
    """Until `condition()` holds (a counter the harness advances; no event to await)."""
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def offsets_in_number_order(log: PublishLog, name: str) -> list[int]:
    placed = [
        (int(message_id.removeprefix(name)), publish.position)
        for message_id, publish in log.publishes.items()
        if publish.position is not None
    ]
    return [position[1] for _, position in sorted(placed)]


@pytest.mark.timeout(60)
async def test_a_publisher_pipelines_on_one_connection_and_keeps_its_order(
    proxy: FaultProxy,
) -> None:
    log = PublishLog()
    publisher = HttpPublisher(log, "pipelined", 2000.0, proxy)
    try:
        await publisher.run(300)
    finally:
        await publisher.close()
    assert publisher.confirmed == 300
    assert publisher.http.connections == 1
    assert offsets_in_number_order(log, "h") == list(range(1, 301))
    assert proxy.counts["connections"] == 1


@pytest.mark.timeout(60)
async def test_a_reset_fails_what_was_in_flight_and_the_next_publish_reconnects(
    proxy: FaultProxy,
) -> None:
    log = PublishLog()
    publisher = HttpPublisher(log, "resets", 1000.0, proxy)
    running = asyncio.create_task(publisher.run())
    try:
        await until(lambda: publisher.confirmed >= 100, "100 published")
        proxy.reset_all()
        await until(lambda: publisher.http.connections >= 2, "a new connection")
        confirmed = publisher.confirmed
        await until(lambda: publisher.confirmed >= confirmed + 100, "100 more published")
        publisher.stop.set()
        await running
    finally:
        running.cancel()
        await publisher.close()
    offsets = offsets_in_number_order(log, "h")
    assert len(offsets) == publisher.confirmed
    # Stored in the order numbered: what came back after the reset went on after the rest
    # (those in flight were cut off, stored or not: the ledger learns which).
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)


@pytest.mark.timeout(90)
async def test_a_subscriber_in_its_own_process_records_what_an_in_process_one_does(
    server: ServerProcess,
) -> None:
    url = f"http://127.0.0.1:{server.port}/pushwire"
    here = PythonSubscriber("here", url, ["websocket"], "u1")
    there = RemoteSubscriber("there", url, ["sse"], "u1")
    subscribers = [here, there]
    try:
        for subscriber in subscribers:
            await subscriber.start("remote")
        for n in range(30):
            status, _ = await http_post(server.port, "/api/publish/remote", f"m{n}".encode())
            assert status == 200
        for n in range(10):
            status, _ = await http_post(server.port, "/api/send/u1", f"d{n}".encode())
            assert status == 200
        await until(
            lambda: all(
                len(s.record.items) >= 30 and len(s.direct.items) >= 10 for s in subscribers
            ),
            "every message to both",
        )
    finally:
        for subscriber in subscribers:
            await subscriber.stop()

    def seen(items: list[Got | Hole]) -> list[tuple[str, int, str]]:
        return [(i.epoch, i.offset, i.data) for i in items if isinstance(i, Got)]

    assert there.record.start == here.record.start
    assert seen(there.record.items) == seen(here.record.items)
    assert [d for _, _, d in seen(there.record.items)] == [f"m{n}" for n in range(30)]
    assert there.direct.start == here.direct.start
    assert seen(there.direct.items) == seen(here.direct.items)
    assert there.transports == {"sse"}
    assert there.process is not None and there.process.returncode == 0
    assert "there: on sse" in there.describe()
