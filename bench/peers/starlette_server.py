"""Starlette on uvicorn: `WebSocketRoute` endpoints, and sse-starlette's `EventSourceResponse`."""

import argparse
import asyncio
from collections.abc import AsyncIterator

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

sockets: set[WebSocket] = set()
queues: set[asyncio.Queue[str]] = set()


async def fanout(websocket: WebSocket) -> None:
    await websocket.accept()
    sockets.add(websocket)
    try:
        while True:
            message = await websocket.receive_text()
            for other in list(sockets):
                await other.send_text(message)
            for queue in list(queues):
                queue.put_nowait(message)
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(websocket)


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def sse(request: Request) -> EventSourceResponse:
    queue: asyncio.Queue[str] = asyncio.Queue()
    queues.add(queue)

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            yield {"comment": "ready"}
            while True:
                yield {"data": await queue.get()}
        finally:
            queues.discard(queue)

    return EventSourceResponse(events(), ping=3600)


app = Starlette(
    routes=[WebSocketRoute("/fanout", fanout), WebSocketRoute("/echo", echo), Route("/sse", sse)]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=parser.parse_args().port,
        log_level="warning",
        loop="uvloop",
        access_log=False,
    )
