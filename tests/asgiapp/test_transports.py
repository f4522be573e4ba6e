"""The ASGI door's transports without a server: what the hub writes, what is sent, bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pushwire
from pushwire.asgiapp.stream import AsgiStream
from pushwire.asgiapp.websocket import AsgiWebSocket
from pushwire.clock import ManualClock
from pushwire.config import Config
from pushwire.transports.stream import NDJSON_FRAMING
from pushwire.transports.websocket.framing import ENVELOPE_FRAMING, frame_binary, frame_text
from tests.helpers import RecordingReceiver


class Sent:
    """An ASGI `send` that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))


def stream(config: Config, clock: ManualClock, max_bytes: int | None = None) -> AsgiStream:
    transport = AsgiStream(
        kind="stream",
        framing=NDJSON_FRAMING,
        heartbeat=b"\n",
        max_bytes=max_bytes,
        config=config,
        clock=clock,
    )
    transport.receiver = RecordingReceiver()
    return transport


async def test_a_stream_sends_what_is_written_then_its_close_and_the_end() -> None:
    transport = stream(Config(), ManualClock())
    receiver = transport.receiver
    assert isinstance(receiver, RecordingReceiver)
    transport.write(b"one\n")
    transport.write(b"two\n")
    transport.close(4000, "bye")
    sent = Sent()
    await transport.send_all(sent)
    close = b'{"type":"close","code":4000,"reason":"bye"}\n'
    # All that was held goes in one piece, and it is the last (no more_body).
    assert sent.messages == [{"type": "http.response.body", "body": b"one\ntwo\n" + close}]
    assert receiver.closes == [(4000, "bye", False)]


async def test_a_stream_heartbeats_on_the_clock() -> None:
    clock = ManualClock()
    transport = stream(Config(heartbeat_interval=20.0), clock)
    clock.advance(20.0)
    clock.advance(20.0)
    assert list(transport.outbox.frames) == [b"\n", b"\n"]


async def test_a_stream_over_max_bytes_is_recycled_with_4000() -> None:
    transport = stream(Config(), ManualClock(), max_bytes=10)
    transport.write(b"0123456789")
    await asyncio.sleep(0)
    ended = [transport.outbox.ended]
    transport.write(b"x")
    await asyncio.sleep(0)
    ended.append(transport.outbox.ended)
    assert ended == [False, True]
    assert list(transport.outbox.frames)[-1].startswith(b'{"type":"close","code":4000')


async def test_a_slow_stream_consumer_is_closed_with_4001_and_its_backlog_dropped() -> None:
    transport = stream(Config(max_write_buffer=8), ManualClock())
    transport.write(b"12345678")
    transport.write(b"9")
    await asyncio.sleep(0)
    assert list(transport.outbox.frames) == [
        b'{"type":"close","code":4001,"reason":"slow consumer (> 8 bytes queued)"}\n'
    ]


async def test_a_websocket_sends_each_framed_message_as_text_or_bytes_then_its_close() -> None:
    transport = AsgiWebSocket(ENVELOPE_FRAMING, Config())
    receiver = transport.receiver = RecordingReceiver()
    transport.write(frame_text(b"hi") + frame_binary(b"\x00"))
    transport.close(1001, "server shutting down")
    transport.write(frame_text(b"too late"))
    sent = Sent()
    await transport.send_all(sent)
    assert sent.messages == [
        {"type": "websocket.send", "text": "hi"},
        {"type": "websocket.send", "bytes": b"\x00"},
        {"type": "websocket.close", "code": 1001, "reason": "server shutting down"},
    ]
    assert receiver.closes == [(1001, "server shutting down", False)]


async def test_a_client_that_closes_is_the_one_that_ended_it() -> None:
    transport = AsgiWebSocket(ENVELOPE_FRAMING, Config())
    receiver = transport.receiver = RecordingReceiver()
    messages = iter(
        [
            {"type": "websocket.receive", "text": "hello"},
            {"type": "websocket.disconnect", "code": 1000},
        ]
    )

    async def receive() -> Any:
        return next(messages)

    await transport.read_all(receive)
    assert receiver.received == ["hello"]
    assert receiver.closes == [(1000, "", True)]
    sent = Sent()
    await transport.send_all(sent)
    assert sent.messages == []


async def test_the_memory_budget_sees_what_a_websocket_holds_and_can_shed_it() -> None:
    transport = AsgiWebSocket(ENVELOPE_FRAMING, Config())
    receiver = transport.receiver = RecordingReceiver()
    transport.write(frame_text(b"held"))
    assert transport.buffered() == len(frame_text(b"held"))
    transport.shed("memory budget exceeded")
    assert transport.buffered() == 0
    assert receiver.closes == [(4001, "memory budget exceeded", False)]
    sent = Sent()
    await transport.send_all(sent)
    assert sent.messages == [
        {"type": "websocket.close", "code": 4001, "reason": "memory budget exceeded"}
    ]


def test_the_doors_are_made_outside_an_event_loop_and_start_in_one() -> None:
    # A module-level `realtime = pushwire.asgi(hub)` runs before any loop does.
    hub = pushwire.Hub()
    realtime = pushwire.asgi(hub)
    server = pushwire.Server(hub, port=0)
    assert realtime.open_connections == 0
    assert server.config.port == 0
