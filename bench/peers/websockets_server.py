"""`websockets`: `serve()` and `broadcast()`, as its documentation shows them."""

import argparse

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    if websocket.request is not None and websocket.request.path == "/echo":
        async for message in websocket:
            await websocket.send(message)
        return
    clients.add(websocket)
    try:
        async for message in websocket:
            broadcast(clients, message)
    finally:
        clients.discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
