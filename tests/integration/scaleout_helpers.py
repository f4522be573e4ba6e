"""Tools for tests of several pushwire nodes on one Redis: publishing through a node's HTTP
API, and a load balancer without sticky sessions in front of the nodes."""

from __future__ import annotations

import asyncio
import http.client
from collections import defaultdict

from tests.servers import ServerProcess

__all__ = ["RoundRobinProxy", "publish_http"]


def publish_http(node: ServerProcess, channel: str, body: bytes) -> tuple[int, bytes]:
    """`POST /api/publish/<channel>` on `node`: the status and the body of the answer."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    conn.request("POST", f"/api/publish/{channel}", body=body)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


class RoundRobinProxy:
    """A TCP proxy: each accepted connection goes to the next node, one request per
    connection. The rotation is kept per request path (`/pushwire/longpoll`,
    `/pushwire/send`, …), so that consecutive polls, or consecutive SSE streams, of one
    client land on alternate nodes whatever else the client sends in between."""

    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.nodes = list(nodes)
        self.turns: dict[str, int] = defaultdict(int)
        #: (node index, request line, first line of the answer) per connection.
        self.log: list[tuple[int, str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        #: Requests whose line contains this fragment get a 503 from the proxy itself, as
        #: many times as the count says (a node that did not answer in time, as seen by the
        #: client).
        self.refuse: tuple[str, int] = ("", 0)
        self._open: list[tuple[str, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.gate.set()
        for client in self._clients:
            client.close()
        for _, _, upstream in self._open:
            upstream.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cut(self, fragment: str) -> int:
        """Close every open connection whose request line contains `fragment`."""
        cut = 0
        for line, client, upstream in list(self._open):
            if fragment in line:
                client.close()
                upstream.close()
                cut += 1
        return cut

    def served(self, fragment: str) -> set[int]:
        """The nodes (indexes) that got a request whose line contains `fragment`."""
        return {index for index, line, _ in self.log if fragment in line and index >= 0}

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._clients.add(writer)
        try:
            await self._proxy(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self._clients.discard(writer)
            self._tasks.discard(task)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, rest = head.split(b"\r\n", 1)
        request_line = line.decode("latin-1")
        path = request_line.split(" ")[1].split("?")[0]
        fragment, count = self.refuse
        if count and fragment in request_line:
            self.refuse = (fragment, count - 1)
            self.log.append((-1, request_line, "HTTP/1.1 503 Service Unavailable"))
            body = b'{"type":"error","code":"unavailable","message":"try again"}'
            cors = b""
            for header in rest.split(b"\r\n"):
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"origin":
                    cors = b"Access-Control-Allow-Origin: %s\r\n" % value.strip()
                    cors += b"Access-Control-Allow-Credentials: true\r\n"
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n%s"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (cors, len(body), body)
            )
            await writer.drain()
            return
        await self.gate.wait()
        index = self.turns[path] % len(self.nodes)
        self.turns[path] += 1
        node = self.nodes[index]
        up_reader, up_writer = await asyncio.open_connection(node.host, node.port)
        entry = (request_line, writer, up_writer)
        self._open.append(entry)
        record = [index, request_line, ""]
        self.log.append(tuple(record))  # type: ignore[arg-type]
        position = len(self.log) - 1
        try:
            up_writer.write(line + b"\r\nConnection: close\r\n" + rest)

            async def upstream_to_client() -> None:
                first = True
                while data := await up_reader.read(65536):
                    if first:
                        status = data.split(b"\r\n", 1)[0].decode("latin-1")
                        self.log[position] = (index, request_line, status)
                        first = False
                    writer.write(data)
                    await writer.drain()
                writer.close()

            async def client_to_upstream() -> None:
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()

            sending = asyncio.ensure_future(client_to_upstream())
            try:
                await upstream_to_client()
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
        finally:
            self._open.remove(entry)
            up_writer.close()
