"""pushwire's ASGI door (`pushwire.asgi(hub)`) on uvicorn (uvloop, httptools), the demo
routes as `pushwire serve` has them: the same hub and transports as the native server, with
uvicorn's HTTP and WebSocket under them instead of pushwire's own."""

import argparse

import uvicorn

import pushwire
from pushwire.server.fdlimit import raise_file_limit

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    raise_file_limit()  # as `pushwire serve` does: 10,000 subscribers need the descriptors
    hub = pushwire.Hub(config=pushwire.Config(port=port))
    uvicorn.run(
        pushwire.asgi(hub),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
        backlog=4096,
        # The load generator answers no WebSocket ping; uvicorn drops a client after
        # ping interval + timeout (40 s) without a pong, and 10,000 ASGI handshakes on a busy
        # machine took longer than that (the publisher, connected first, was dropped).
        # pushwire's own pings (the same 20 s + 20 s) never came due in a native run.
        ws_ping_interval=None,
    )
