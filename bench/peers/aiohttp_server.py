"""aiohttp: `WebSocketResponse` for WebSocket, `StreamResponse` for server-sent events."""

import argparse
import asyncio

import uvloop
from aiohttp import WSMsgType, web

sockets: set[web.WebSocketResponse] = set()
streams: set[web.StreamResponse] = set()


async def fanout(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                for other in list(sockets):
                    await other.send_str(msg.data)
                event = f"data: {msg.data}\n\n".encode()
                for stream in list(streams):
                    await stream.write(event)
    finally:
        sockets.discard(ws)
    return ws


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    streams.add(response)
    try:
        await response.write(b": ready\n\n")
        while True:
            await asyncio.sleep(3600)
    finally:
        streams.discard(response)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    app = web.Application()
    app.add_routes([web.get("/fanout", fanout), web.get("/echo", echo), web.get("/sse", sse)])
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, print=None, access_log=None)
