"""What one HTTP request costs the Python client: its own hand-written HTTP/1.1 connection
(pushwire.client.transports.http) against httpx and httpcore, each sending `--requests`
sequential POSTs on one kept-alive connection to a minimal asyncio server in the same process.

    python -m bench.http_client_cost --requests 2000

Prints CPU microseconds (client and server together, the server being the same for all) and
wall microseconds per request. It is why the client's HTTP transports keep their own small
HTTP/1.1 layer (docs/benchmarks.md, "The Python client's HTTP layer").
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import httpcore
import httpx

from pushwire.client.transports.http import HttpConnection

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request with 200 "ok", on a kept-alive connection, until the client
    closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
        await writer.wait_closed()


async def _measure(requests: int) -> list[tuple[str, float, float]]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"

    async def own() -> None:
        connection = HttpConnection("127.0.0.1", port, None)
        for _ in range(requests):
            await connection.request("POST", "/x", b"x")
        connection.close()

    async def with_httpcore() -> None:
        async with httpcore.AsyncConnectionPool(max_connections=1) as pool:
            for _ in range(requests):
                await pool.request("POST", url, content=b"x")

    async def with_httpx() -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(requests):
                await client.post(url, content=b"x")

    clients: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("pushwire's own", own),
        (f"httpcore {httpcore.__version__}", with_httpcore),
        (f"httpx {httpx.__version__}", with_httpx),
    ]
    results = []
    for name, run in clients:
        cpu, wall = time.process_time(), time.perf_counter()
        await run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        results.append((name, cpu * 1e6 / requests, wall * 1e6 / requests))
    await asyncio.sleep(0.1)  # the server sees the end of the last connection
    server.close()
    await server.wait_closed()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    for name, cpu, wall in asyncio.run(_measure(args.requests)):
        print(f"{name:>22}: {cpu:7.0f} us CPU, {wall:7.0f} us wall per request")


if __name__ == "__main__":
    main()
