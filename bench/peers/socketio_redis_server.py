"""python-socketio with its Redis manager, on uvicorn with several worker processes.

The documented multi-process form: every worker's `AsyncServer` shares one
`AsyncRedisManager`, so an `emit` to a room in one worker reaches the room's members in all
of them. uvicorn's workers share one listening socket; the load generator's clients use the
WebSocket transport only, so no sticky sessions are needed.
"""

import argparse
import os

import socketio
import uvicorn

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

sio = socketio.AsyncServer(
    async_mode="asgi",
    cors_allowed_origins="*",
    client_manager=socketio.AsyncRedisManager(REDIS_URL),
    # The default (True) runs each event in its own task: two `pub` events from one client
    # then overtake each other on the way through Redis, and other workers' clients get the
    # messages out of order. False handles a client's events one after another, in order.
    async_handlers=os.environ.get("BENCH_ASYNC_HANDLERS") == "1",
)
app = socketio.ASGIApp(sio)


@sio.event
async def connect(sid: str, environ: dict[str, object]) -> None:
    await sio.enter_room(sid, "bench")


@sio.event
async def pub(sid: str, data: str) -> None:
    await sio.emit("msg", data, room="bench")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument(
        "--async-handlers", action="store_true", help="python-socketio's default: reorders"
    )
    args = parser.parse_args()
    # The workers import this module afresh: they read their settings from the environment.
    os.environ["BENCH_REDIS_URL"] = args.redis
    os.environ["BENCH_ASYNC_HANDLERS"] = "1" if args.async_handlers else "0"
    uvicorn.run(
        "socketio_redis_server:app",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="info",  # "Application startup complete." per worker: the harness waits for it
        loop="uvloop",
        access_log=False,
    )
