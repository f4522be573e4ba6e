"""A Starlette app with pushwire mounted under `/rt`, as a web developer would write it: run
by the ASGI servers of tests/asgiapp (`tests.asgi_site:app`), in a process of its own.

`POST /shout/<channel>` is the app's own handler: it publishes its body in-process
(`await hub.publish`), through the hub pushwire serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import pushwire

#: A message bound under every ASGI server's own (daphne's is 1 MiB): pushwire's is the one met.
MAX_MESSAGE = 64 * 1024
hub = pushwire.Hub(config=pushwire.Config(max_message=MAX_MESSAGE))
realtime = pushwire.asgi(hub)


async def shout(request: Request) -> JSONResponse:
    body = await request.body()
    message = await hub.publish(request.path_params["channel"], body.decode())
    return JSONResponse({"offset": message.offset})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with realtime:
        yield


app = Starlette(
    routes=[Route("/shout/{channel}", shout, methods=["POST"]), Mount("/rt", app=realtime)],
    lifespan=lifespan,
)
