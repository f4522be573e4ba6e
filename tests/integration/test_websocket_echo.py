"""Echo over real sockets: sizes, fragments, bad input and its close codes, heartbeats."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import RawClient, client_frame

pytestmark = pytest.mark.integration

SIZES = [1, 125, 126, 65535, 65536, 1024 * 1024]


async def bystander_roundtrip(bystander: ClientConnection, text: str) -> None:
    await bystander.send(text)
    assert await asyncio.wait_for(bystander.recv(), 5) == text


@pytest.mark.parametrize("size", SIZES)
async def test_text_of_every_length_class_echoes_as_text(server: ServerProcess, size: int) -> None:
    text = ("pushwire✓" * (size // 11 + 1)).encode()[:size].decode(errors="ignore")
    async with connect(server.ws_url("/echo"), max_size=2 * 1024 * 1024) as ws:
        await ws.send(text)
        echoed = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(echoed, str)
    assert echoed == text


@pytest.mark.parametrize("size", SIZES)
async def test_binary_of_every_length_class_echoes_as_binary(
    server: ServerProcess, size: int
) -> None:
    payload = os.urandom(size)
    async with connect(server.ws_url("/echo"), max_size=2 * 1024 * 1024) as ws:
        await ws.send(payload)
        echoed = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(echoed, bytes)
    assert echoed == payload


async def test_fragmented_messages_are_reassembled(server: ServerProcess) -> None:
    async with connect(server.ws_url("/echo")) as ws:
        await ws.send(["frag", "men", "ted ✓"])
        assert await asyncio.wait_for(ws.recv(), 5) == "fragmented ✓"
        await ws.send([b"\x00\x01", b"", b"\x02"])
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01\x02"


def test_a_ping_between_fragments_is_answered_and_the_message_kept(server: ServerProcess) -> None:
    client = RawClient(server)
    client.send(client_frame(0x1, b"hel", fin=False))
    client.send(client_frame(0x9, b"are you there"))
    client.send(client_frame(0x0, b"lo", fin=True))
    assert client.recv_frame() == (0xA, b"are you there")
    assert client.recv_frame() == (0x1, b"hello")
    client.close()


def test_a_ping_read_with_later_frames_is_answered_before_their_messages(
    server: ServerProcess,
) -> None:
    # Autobahn|Testsuite 5.6: fragment, Ping, last fragment in one write. The Pong used to go
    # out after the echo (after everything answered for the same read).
    client = RawClient(server)
    client.send(
        client_frame(0x1, b"fragment1", fin=False)
        + client_frame(0x9, b"ping payload")
        + client_frame(0x0, b"fragment2", fin=True)
        + client_frame(0x9, b"second")
        + client_frame(0x2, b"whole")
    )
    assert client.recv_frame() == (0xA, b"ping payload")
    assert client.recv_frame() == (0x1, b"fragment1fragment2")
    assert client.recv_frame() == (0xA, b"second")
    assert client.recv_frame() == (0x2, b"whole")
    client.close()


def test_a_close_between_fragments_is_a_normal_close(server: ServerProcess) -> None:
    # RFC 6455 5.4: control frames may come between fragments, a Close too (Autobahn 7.1.5:
    # it was answered with 1002 "incomplete fragmented message"). The cut message is dropped
    # and what follows the Close is discarded.
    client = RawClient(server)
    client.send(
        client_frame(0x1, b"fragment1", fin=False)
        + client_frame(0x8, struct.pack("!H", 1000))
        + client_frame(0x0, b"fragment2", fin=True)
    )
    assert client.recv_frame() == (0x8, struct.pack("!H", 1000))
    assert client.closed_by_server()


def test_a_message_just_before_the_close_is_answered_before_the_close(
    server: ServerProcess,
) -> None:
    client = RawClient(server)
    client.send(client_frame(0x1, b"last words") + client_frame(0x8, struct.pack("!H", 1000)))
    assert client.recv_frame() == (0x1, b"last words")
    assert client.expect_close() == (1000, "")
    assert client.closed_by_server()


def test_a_multibyte_character_split_across_fragments_is_valid(server: ServerProcess) -> None:
    client = RawClient(server)
    encoded = "✓".encode()
    client.send(client_frame(0x1, encoded[:1], fin=False))
    client.send(client_frame(0x0, encoded[1:], fin=True))
    assert client.recv_frame() == (0x1, encoded)
    client.close()


async def test_invalid_utf8_closes_with_1007_and_others_carry_on(server: ServerProcess) -> None:
    async with connect(server.ws_url("/ws/room")) as bystander:
        client = RawClient(server)
        client.send(client_frame(0x1, b"ok \xff\xfe"))
        code, reason = client.expect_close()
        assert code == 1007
        assert reason == "invalid UTF-8 in text message at position 3"
        assert client.closed_by_server()
        await bystander_roundtrip(bystander, "still here")


async def test_nothing_is_written_after_our_close_and_the_channel_carries_on(
    server: ServerProcess,
) -> None:
    # The closed subscriber joined first, so the fan-out meets it before the other one.
    client = RawClient(server, "/ws/room")
    async with connect(server.ws_url("/ws/room")) as other:
        await other.send("before")
        assert await asyncio.wait_for(other.recv(), 5) == "before"
        assert client.recv_frame() == (0x1, b"before")
        client.send(client_frame(0x1, b"\xff"))
        assert client.expect_close()[0] == 1007
        # Our Close went out and we half-closed; the peer never answers. Messages published
        # meanwhile reach the others, and none is written to it after the Close.
        sent = [f"after {i}" for i in range(5)]
        for text in sent:
            await other.send(text)
        assert [await asyncio.wait_for(other.recv(), 5) for _ in sent] == sent
        assert client.read_to_end() == b""
    client.close()


def test_invalid_utf8_in_a_first_fragment_fails_before_the_message_ends(
    server: ServerProcess,
) -> None:
    client = RawClient(server)
    client.send(client_frame(0x1, b"\xc3\x28", fin=False))  # invalid at once, not incomplete
    assert client.expect_close()[0] == 1007


async def test_a_message_over_the_limit_closes_with_1009_just_under_passes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_message=1000")
    async with connect(server.ws_url("/ws/room")) as bystander:
        async with connect(server.ws_url("/echo")) as ws:
            await ws.send(b"x" * 1000)
            assert await asyncio.wait_for(ws.recv(), 5) == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        assert closed.value.rcvd.reason == "frame with 1001 bytes exceeds limit of 1000 bytes"
        await bystander_roundtrip(bystander, "unaffected")


def test_a_fragmented_message_over_the_limit_closes_with_1009(
    server_factory: ServerFactory,
) -> None:
    server = server_factory("--set", "max_message=1000")
    client = RawClient(server)
    client.send(client_frame(0x2, b"x" * 600, fin=False))
    client.send(client_frame(0x0, b"x" * 600, fin=True))
    assert client.expect_close()[0] == 1009


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (client_frame(0x1, b"x", rsv=4), "reserved bits must be 0"),
        (client_frame(0x3, b"x"), "invalid opcode"),
        (client_frame(0x9, b"x", fin=False), "fragmented control frame"),
        (client_frame(0x9, b"x" * 126), "control frame too long"),
        (client_frame(0x0, b"x"), "unexpected continuation frame"),
        (b"\x81\x01x", "incorrect masking"),  # an unmasked client frame
        (client_frame(0x8, struct.pack("!H", 1005)), "invalid status code"),
    ],
)
def test_protocol_errors_close_with_1002(server: ServerProcess, frame: bytes, reason: str) -> None:
    client = RawClient(server)
    client.send(frame)
    code, sent_reason = client.expect_close()
    assert code == 1002
    assert reason in sent_reason
    assert client.closed_by_server()


def test_a_close_reason_that_is_not_utf8_closes_with_1007(server: ServerProcess) -> None:
    client = RawClient(server)
    client.send(client_frame(0x8, struct.pack("!H", 1000) + b"\xff"))
    code, reason = client.expect_close()
    assert code == 1007
    assert "invalid start byte" in reason


def test_a_client_close_is_answered_with_the_same_code(server: ServerProcess) -> None:
    client = RawClient(server)
    client.send(client_frame(0x8, struct.pack("!H", 4321) + b"bye"))
    assert client.expect_close() == (4321, "bye")
    assert client.closed_by_server()


def test_an_empty_client_close_is_answered_with_an_empty_close(server: ServerProcess) -> None:
    # RFC 6455 5.5.1: 1005 may not be sent, so the empty payload is echoed as received.
    client = RawClient(server)
    client.send(client_frame(0x8, b""))
    assert client.recv_frame() == (0x8, b"")
    assert client.closed_by_server()


def test_pings_get_pongs_with_the_same_payload(server: ServerProcess) -> None:
    client = RawClient(server)
    client.send(client_frame(0x9, b"\x01\x02\x03"))
    assert client.recv_frame() == (0xA, b"\x01\x02\x03")
    client.close()


def test_a_peer_that_answers_pings_stays_connected(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "ping_interval=0.2", "--set", "ping_timeout=0.2")
    client = RawClient(server)
    for _ in range(4):
        opcode, payload = client.recv_frame()
        assert opcode == 0x9
        client.send(client_frame(0xA, payload))
    client.send(client_frame(0x1, b"alive"))
    while (frame := client.recv_frame())[0] == 0x9:
        client.send(client_frame(0xA, frame[1]))
    assert frame == (0x1, b"alive")
    client.close()


def test_a_peer_that_never_answers_pings_is_dropped(server_factory: ServerFactory) -> None:
    server = server_factory("--set", "ping_interval=0.2", "--set", "ping_timeout=0.2")
    client = RawClient(server)
    assert client.recv_frame()[0] == 0x9
    assert client.closed_by_server()
