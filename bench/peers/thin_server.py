"""The thin-Python ceiling: an asyncio Protocol on uvloop, no framework.

The least a Python server can do: answer the WebSocket handshake, unmask what clients send,
and for fan-out frame each message once and write that one bytes object to every
subscriber's transport. No ping, no close handshake, no limits: a ceiling, not a server.
"""

import argparse
import asyncio
import base64
import hashlib
from typing import cast

import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
subscribers: set[asyncio.Transport] = set()


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


class WebSocketProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.open = False
        self.fanout = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport: uvloop's TCPTransport has asyncio.Transport's methods,
        # though it is not a subclass of it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            subscribers.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1]
            key = b""
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.open = True
            self.fanout = path == b"/fanout"
            if self.fanout:
                subscribers.add(self.transport)
        batch = []
        buffer = self.buffer
        while len(buffer) >= 6:
            opcode = buffer[0] & 0x0F
            n = buffer[1] & 0x7F
            start = 2
            if n == 126:
                n = int.from_bytes(buffer[2:4], "big")
                start = 4
            elif n == 127:
                n = int.from_bytes(buffer[2:10], "big")
                start = 10
            if len(buffer) < start + 4 + n:
                break
            mask = buffer[start : start + 4]
            body = buffer[start + 4 : start + 4 + n]
            buffer = buffer[start + 4 + n :]
            if opcode == 0x8:
                self.transport.close()
                return
            if mask != b"\0\0\0\0":
                bits = int.from_bytes(mask * ((n + 3) // 4 or 1), "big") >> (8 * ((-n) % 4))
                body = (int.from_bytes(body, "big") ^ bits).to_bytes(n, "big")
            batch.append(frame(body, opcode))
        self.buffer = buffer
        if not batch:
            return
        out = b"".join(batch)  # everything one read brought: one write per subscriber
        if self.fanout:
            for transport in subscribers:
                transport.write(out)
        else:
            self.transport.write(out)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(WebSocketProtocol, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
