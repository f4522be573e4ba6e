"""permessage-deflate over real sockets (`--websocket-compression`): the `websockets` client
negotiates it and gets fan-out right; subscribers that agreed get the very same compressed
frame; a zip bomb gets 1009."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import urllib.request
import zlib

import pytest
from websockets.asyncio.client import connect

from pushwire.transports.websocket.deflate import INFLATER_BYTES
from tests.servers import ServerFactory, ServerProcess
from tests.wire_clients import counted

pytestmark = pytest.mark.integration

CHAT = json.dumps(
    {
        "user": "alice",
        "room": "general",
        "text": "Are we still on for the design review at three? I put the notes in the doc.",
        "sent_at": "2026-12-06T12:52:05Z",
    }
)


def publish(server: ServerProcess, channel: str, body: bytes) -> None:
    request = urllib.request.Request(
        server.url(f"/api/publish/{channel}"), data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def compressing(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--websocket-compression", "--set", "max_message=65536")


async def test_websockets_clients_negotiate_deflate_and_get_every_message(
    compressing: ServerProcess,
) -> None:
    url = compressing.ws_url("/ws/room")
    subscribers = await asyncio.gather(*(connect(url) for _ in range(20)))
    plain = await connect(url, compression=None)
    try:
        for ws in subscribers:
            assert ws.response is not None
            agreed = ws.response.headers["Sec-WebSocket-Extensions"]
            assert agreed.startswith("permessage-deflate; server_no_context_takeover")
            assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
        assert plain.protocol.extensions == []
        sent = [f"{CHAT} #{i}" if i % 2 else "short" for i in range(10)]
        for message in sent:
            await asyncio.to_thread(publish, compressing, "room", message.encode())
        for ws in [*subscribers, plain]:
            assert [await asyncio.wait_for(ws.recv(), 20) for _ in sent] == sent
        # The client's compressed messages are decompressed (context takeover across them).
        await subscribers[0].send(CHAT)
        await subscribers[0].send(CHAT)
        for ws in [*subscribers, plain]:
            assert [await asyncio.wait_for(ws.recv(), 20) for _ in range(2)] == [CHAT, CHAT]
    finally:
        await asyncio.gather(*(ws.close() for ws in [*subscribers, plain]))


async def raw_upgrade(
    server: ServerProcess, path: str, extensions: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A hand-made upgrade: the reader, the writer and the 101 answer's head."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101 ")
    return reader, writer, head


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One whole unmasked server frame, as its bytes."""
    head = await asyncio.wait_for(reader.readexactly(2), 20)
    length = head[1] & 0x7F
    extra = b""
    if length == 126:
        extra = await reader.readexactly(2)
        (length,) = struct.unpack("!H", extra)
    return head + extra + await asyncio.wait_for(reader.readexactly(length), 20)


async def test_subscribers_that_agreed_get_the_same_compressed_frame(
    compressing: ServerProcess,
) -> None:
    offers = [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=15",
    ]
    clients = [await raw_upgrade(compressing, "/ws/room", offer) for offer in offers * 3]
    try:
        for _, _, head in clients:
            assert b"server_no_context_takeover" in head
        await asyncio.to_thread(publish, compressing, "room", CHAT.encode())
        frames = [await read_frame(reader) for reader, _, _ in clients]
        assert len(set(frames)) == 1
        frame = frames[0]
        assert frame[0] == 0xC1  # FIN, RSV1: compressed, text
        payload = frame[2:] if frame[1] < 126 else frame[4:]
        inflated = zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff")
        assert inflated.decode() == CHAT
        assert len(frame) < len(CHAT)
    finally:
        for _, writer, _ in clients:
            writer.close()


async def test_a_zip_bomb_gets_1009(compressing: ServerProcess) -> None:
    reader, writer, _ = await raw_upgrade(compressing, "/echo", "permessage-deflate")
    try:
        bomb = zlib.compressobj(wbits=-15)
        data = bomb.compress(b"\x00" * (16 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
        payload = data[:-4]  # 16 MiB of zeros in about 16 KiB, under max_message (64 KiB)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(struct.pack("!BBH", 0xC2, 0x80 | 126, len(payload)) + mask + masked)
        frame = await read_frame(reader)
        assert frame[0] == 0x88  # Close
        assert struct.unpack("!H", frame[2:4]) == (1009,)
    finally:
        writer.close()


def compressed_frame(data: bytes, *, fin: bool, first: bool = True) -> bytes:
    """A masked client frame of `data` deflated on its own, sync-flushed (RFC 7692 7.2.1:
    the last frame of a message drops the flush's 00 00 ff ff)."""
    deflater = zlib.compressobj(wbits=-15)
    payload = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4] if fin else payload
    opcode = (0x40 | 0x01) if first else 0x00  # RSV1 + text on the first frame only
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | len(payload)) + mask + masked


async def test_decompressors_and_inflated_partial_messages_count_in_the_budget(
    server_factory: ServerFactory,
) -> None:
    """Each compressed connection's decompressor and the decompressed part of its unfinished
    message count in `/api/stats` (`memory_connections`), not the few compressed bytes."""
    server = server_factory(
        "--websocket-compression", "--set", "memory_budget_interval=0.05",
        "--set", f"memory_budget={1024 * 1024 * 1024}",
    )  # fmt: skip
    count, inflated = 20, 30_000
    part = compressed_frame(b"a" * inflated, fin=False)  # about 60 bytes on the wire
    assert len(part) < 100
    clients = [await raw_upgrade(server, "/echo", "permessage-deflate") for _ in range(count)]
    try:
        for _, writer, _ in clients:
            writer.write(part)
            await writer.drain()
        held = count * (inflated + INFLATER_BYTES)
        found = await asyncio.to_thread(counted, server, lambda s: s["memory_connections"] >= held)
        assert found["memory_in_use"] >= held
        # The messages end: their parts are freed, the decompressors stay (and count).
        for reader, writer, _ in clients:
            writer.write(compressed_frame(b"b", fin=True, first=False))
            await writer.drain()
            echo = await read_frame(reader)
            assert echo[0] == 0xC1  # the echo, compressed
            inflater = zlib.decompressobj(wbits=-15)
            assert inflater.decompress(echo[2:] + b"\x00\x00\xff\xff") == b"a" * inflated + b"b"
        await asyncio.to_thread(
            counted, server, lambda s: s["memory_connections"] == count * INFLATER_BYTES
        )
    finally:
        for _, writer, _ in clients:
            writer.close()
    await asyncio.to_thread(counted, server, lambda s: s["memory_connections"] == 0)
