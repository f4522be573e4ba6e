"""Clients and proxies written by hand from docs/protocol.md and RFC 6455, so that what the
tests send can be wrong on purpose and what they read is checked byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from tests.servers import ServerProcess


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame built by hand, so that it can be wrong on purpose."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class RawClient:
    """A WebSocket client on a plain socket: handshake, then frames in and out by hand."""

    def __init__(self, server: ServerProcess, path: str = "/echo") -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        return data

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame; server frames are never masked."""
        first, second = self._read(2)
        assert second & 0x80 == 0, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def expect_close(self) -> tuple[int, str]:
        """Read until the server's Close frame; return its code and reason."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                return code, payload[2:].decode()

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def read_to_end(self) -> bytes:
        """Everything the server sends until it closes the TCP connection."""
        rest, self.buffer = self.buffer, b""
        while chunk := self.sock.recv(65536):
            rest += chunk
        return rest

    def closed_by_server(self) -> bool:
        """True when the server closes the TCP connection (within the socket timeout)."""
        try:
            while True:
                self._recv()
        except EOFError:
            return True

    def close(self) -> None:
        self.sock.close()


class TcpClient:
    """A pushwire TCP client written from docs/protocol.md alone."""

    def __init__(self, server: ServerProcess, *, wrap: ssl.SSLContext | None = None) -> None:
        assert server.tcp_port is not None
        raw = socket.create_connection((server.host, server.tcp_port), timeout=10)
        self.sock = wrap.wrap_socket(raw, server_hostname="localhost") if wrap else raw
        self.buffer = b""

    def send_frame(self, kind: int, payload: bytes) -> None:
        self.sock.sendall(struct.pack("!IB", len(payload) + 1, kind) + payload)

    def send(self, envelope: dict[str, Any], binary: bytes | None = None) -> None:
        if binary is None:
            self.send_frame(1, json.dumps(envelope).encode())
        else:
            self.send_frame(2, json.dumps(envelope).encode() + b"\n" + binary)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.buffer += data
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv(self) -> dict[str, Any]:
        """The next envelope; binary data comes back in "binary"."""
        (length,) = struct.unpack("!I", self._read(4))
        kind, payload = self._read(1)[0], self._read(length - 1)
        if kind == 1:
            envelope: dict[str, Any] = json.loads(payload)
            return envelope
        header, _, data = payload.partition(b"\n")
        envelope = json.loads(header)
        envelope["binary"] = data
        return envelope

    def next(self, kind: str) -> dict[str, Any]:
        while (envelope := self.recv())["type"] != kind:
            if envelope["type"] == "ping":
                self.send({"type": "pong"})
        return envelope

    def hello(self, **fields: Any) -> dict[str, Any]:
        self.send({"type": "hello", **fields})
        return self.next("welcome")

    def closed_by_server(self) -> bool:
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, ssl.SSLError):
            return True
        return True

    def close(self) -> None:
        self.sock.close()


class Proxy:
    """A TCP proxy that can cut every connection (a network drop), refuse WebSocket
    upgrades while letting plain HTTP through (a proxy that blocks WebSocket), and hold what
    the server sends to let it go in one write (so that it arrives in one read)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.block_websocket = False
        self.refusing = False
        self.holding = False
        self.held: dict[asyncio.StreamWriter, bytearray] = {}
        self._held_more = asyncio.Event()
        self.connections: set[asyncio.StreamWriter] = set()
        #: Every byte clients sent through the proxy (their requests), in arrival order.
        self.sent_up = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        first = await reader.read(65536)
        if self.block_websocket and b"upgrade: websocket" in first.lower():
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.connections.update((writer, up_writer))
        up_writer.write(first)
        self.sent_up += first

        async def pump(
            source: asyncio.StreamReader, target: asyncio.StreamWriter, downstream: bool
        ) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    if not downstream:
                        self.sent_up += data
                    if downstream and self.holding:
                        self.held.setdefault(target, bytearray()).extend(data)
                        self._held_more.set()
                        continue
                    target.write(data)
                    await target.drain()
            target.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    async def wait_held(self, marker: bytes, timeout: float) -> None:
        """Until `marker` is in what the proxy holds."""

        async def held() -> None:
            while not any(marker in data for data in self.held.values()):
                self._held_more.clear()
                await self._held_more.wait()

        await asyncio.wait_for(held(), timeout)

    def release(self) -> None:
        """Send what was held, one write per connection, and stop holding."""
        self.holding = False
        for writer, data in self.held.items():
            writer.write(bytes(data))
        self.held.clear()

    def cut(self) -> None:
        """Drop every open connection at once (no Close frame, no goodbye)."""
        for writer in list(self.connections):
            writer.transport.abort()
        self.connections.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


# -- the HTTP transports ------------------------------------------------------------------------

POLL_INTERVAL = 0.02


def hello_query(**fields: Any) -> str:
    return urllib.parse.quote(json.dumps({"type": "hello", **fields}))


def publish(
    server: ServerProcess, channel: str, body: bytes, binary: bool = False
) -> dict[str, Any]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    headers = {"Content-Type": "application/octet-stream" if binary else "text/plain"}
    conn.request("POST", f"/api/publish/{channel}", body=body, headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    result: dict[str, Any] = json.loads(response.read())
    conn.close()
    return result


def stats(server: ServerProcess) -> dict[str, int]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/api/stats")
    result: dict[str, int] = json.loads(conn.getresponse().read())
    conn.close()
    return result


def counted(
    server: ServerProcess, until: Callable[[dict[str, int]], bool], wait: float = 20.0
) -> dict[str, int]:
    """The stats, once they say `until` (the memory budget's figures move at each count)."""
    deadline = time.monotonic() + wait
    while True:
        found = stats(server)
        if until(found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def session_header(welcome: dict[str, Any]) -> dict[str, str]:
    """The header naming a session and proving it ours, from its welcome."""
    return {"Pushwire-Session": f"{welcome['session']} {welcome['resume']}"}


class Poller:
    """A polling client on one keep-alive HTTP/1.1 connection: opened by `POST E/<kind>`
    (or `GET E/<kind>?hello=` with `opening="GET"`), polls and sends naming the session in
    the `Pushwire-Session` header."""

    def __init__(
        self,
        server: ServerProcess,
        kind: str,
        path: str = "/pushwire",
        *,
        opening: str = "POST",
        **hello: Any,
    ):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        self.kind, self.path = kind, path
        self.cursor = 0
        if opening == "POST":
            body = json.dumps({"type": "hello", **hello}).encode()
            envelopes = self._request("POST", f"{path}/{kind}", body=body)
        else:
            envelopes = self._request("GET", f"{path}/{kind}?hello={hello_query(**hello)}")
        assert envelopes[0]["type"] == "welcome", envelopes
        self.welcome = envelopes[0]
        self.session: str = self.welcome["session"]
        self.secret: str = self.welcome["resume"]
        self.backlog: list[dict[str, Any]] = envelopes[1:]

    def _request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        self.conn.request(method, target, body=body, headers=headers or {})
        response = self.conn.getresponse()
        answer = response.read()
        assert response.status == 200, answer
        self.cursor = int(response.headers["Pushwire-Cursor"])
        return [json.loads(line) for line in answer.splitlines() if line]

    def poll(self, cursor: int | None = None) -> list[dict[str, Any]]:
        cursor = self.cursor if cursor is None else cursor
        target = f"{self.path}/{self.kind}?cursor={cursor}"
        return self._request("GET", target, None, session_header(self.welcome))

    def send(self, *envelopes: dict[str, Any]) -> None:
        body = "\n".join(json.dumps(e) for e in envelopes).encode()
        headers = session_header(self.welcome)
        self.conn.request("POST", f"{self.path}/send", body=body, headers=headers)
        response = self.conn.getresponse()
        response.read()
        assert response.status == 204

    def receive(self, count: int, kind: str = "message") -> list[dict[str, Any]]:
        """The next `count` envelopes of `kind`, polling as needed."""
        got: list[dict[str, Any]] = []
        while len(got) < count:
            while not self.backlog:
                self.backlog = self.poll()
                if not self.backlog and self.kind == "polling":
                    time.sleep(POLL_INTERVAL)  # ajax polling asks again after an interval
            envelope = self.backlog.pop(0)
            if envelope["type"] == kind:
                got.append(envelope)
        return got


class Streamer:
    """A streaming client (stream, sse or iframe) on a raw socket, decoding chunks by hand.
    `stream` opens with `POST E/stream` (the hello as its body), `sse` and `iframe` with
    `GET E/<kind>?hello=` (as EventSource and an iframe must); `opening` chooses."""

    def __init__(
        self,
        server: ServerProcess,
        kind: str,
        path: str = "/pushwire",
        *,
        opening: str | None = None,
        **hello: Any,
    ):
        self.server, self.kind, self.path = server, kind, path
        self.sock = socket.create_connection((server.host, server.port), timeout=15)
        if (opening or ("POST" if kind == "stream" else "GET")) == "POST":
            body = json.dumps({"type": "hello", **hello}).encode()
            self.sock.sendall(
                f"POST {path}/{kind} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        else:
            origin = (
                "&origin=" + urllib.parse.quote("http://localhost:1") if kind == "iframe" else ""
            )
            target = f"{path}/{kind}?hello={hello_query(**hello)}{origin}"
            self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        self.headers = head.decode().lower()
        self.envelopes = self._envelopes()
        self.welcome = self.next("welcome")

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("stream ended")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._recv()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self._until(b"\r\n"), 16)
            if size == 0:
                return
            while len(self.buffer) < size + 2:
                self._recv()
            yield self.buffer[:size]
            self.buffer = self.buffer[size + 2 :]

    def _envelopes(self) -> Iterator[dict[str, Any]]:
        for data in self._chunks():
            if self.kind == "stream":
                lines = [line for line in data.split(b"\n") if line]
            elif self.kind == "sse":
                lines = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
            else:
                lines = [part.split(b")</script>")[0] for part in data.split(b"<script>p(")[1:]]
            for line in lines:
                yield json.loads(line)

    def next(self, kind: str | None = None) -> dict[str, Any]:
        for envelope in self.envelopes:
            if kind is None or envelope["type"] == kind:
                return envelope
        raise EOFError("stream ended")

    def send(self, *envelopes: dict[str, Any]) -> None:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        body = "\n".join(json.dumps(e) for e in envelopes).encode()
        headers = session_header(self.welcome)
        conn.request("POST", f"{self.path}/send", body=body, headers=headers)
        assert conn.getresponse().status == 204
        conn.close()

    def close(self) -> None:
        self.sock.close()


def subscribe(client: Poller | Streamer, channel: str, **extra: Any) -> dict[str, Any]:
    client.send({"type": "subscribe", "id": 1, "channel": channel, **extra})
    if isinstance(client, Poller):
        return client.receive(1, "subscribed")[0]
    return client.next("subscribed")
