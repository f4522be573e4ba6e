"""python-socketio on uvicorn: `AsyncServer` as an ASGI app, `emit` to a room."""

import argparse

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
app = socketio.ASGIApp(sio)


@sio.event
async def connect(sid: str, environ: dict[str, object]) -> None:
    await sio.enter_room(sid, "bench")


@sio.event
async def pub(sid: str, data: str) -> None:
    await sio.emit("msg", data, room="bench")


@sio.event
async def echo(sid: str, data: str) -> None:
    await sio.emit("echo", data, to=sid)


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
