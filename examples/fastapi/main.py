"""A FastAPI app with pushwire mounted under /rt: the app signs its users in, gives each a
pushwire connection token, and publishes from its own request handler.

    uvicorn main:app --app-dir examples/fastapi

- `/login`: the app's own sign-in form; a signed session cookie remembers the user.
- `/`: the announcement board, for signed-in users: `/rt/pushwire.js` connects with the
  user's token and shows what is announced on `news:board`, live.
- `/token`: a fresh connection token (JWT) for the signed-in user; pushwire.js calls it
  before the token expires, `pushwire chat --token` is given one.
- `POST /announce`: publishes to `news:board` in-process, `await hub.publish(...)`.

Nobody gets into pushwire without a token: the hub is given the secret the tokens are signed
with, and `news:` channels are readable by signed-in users and writable only by the server.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import jwt
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

import pushwire
from pushwire.auth.namespaces import Namespace

# Secrets from the environment; a random one each start otherwise (sign-ins and tokens then
# last until the app restarts, and every worker process would have its own: set both when
# running more than one).
TOKEN_SECRET = os.environ.get("PUSHWIRE_JWT_SECRET") or secrets.token_hex(32)
SESSION_SECRET = os.environ.get("APP_SESSION_SECRET") or secrets.token_hex(32)
#: Seconds a connection token lives; pushwire.js fetches a new one from /token before then.
TOKEN_LIFETIME = 600
#: The app's users and their passwords. A real app keeps salted hashes in its database.
USERS = {"alice": "wonderland", "bob": "builder"}
CHANNEL = "news:board"
#: The longest announcement taken, in characters.
MAX_TEXT = 500

hub = pushwire.Hub(
    config=pushwire.Config(jwt_secret=TOKEN_SECRET),
    # Signed-in users read news:*, and nobody but the server (hub.publish) writes to it.
    namespaces=[Namespace("news", subscribe="authenticated", publish="nobody")],
)
realtime = pushwire.asgi(hub)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with realtime:  # starts pushwire's broker; on exit closes its clients gracefully
        yield


app = FastAPI(lifespan=lifespan)
# The session cookie is signed (itsdangerous) and SameSite=Lax: another site's page cannot
# POST to /announce with it.
app.add_middleware(SessionMiddleware, secret_key=SESSION_SECRET, same_site="lax")
app.mount("/rt", realtime)


def signed_in(request: Request) -> str | None:
    user = request.session.get("user")
    return user if isinstance(user, str) and user in USERS else None


def current_user(request: Request) -> str:
    user = signed_in(request)
    if user is None:
        raise HTTPException(401, "sign in first")
    return user


def connection_token(user: str) -> str:
    """A pushwire connection token: `sub` is who connects, `info` what others see of them."""
    claims = {"sub": user, "exp": int(time.time()) + TOKEN_LIFETIME, "info": {"name": user}}
    return jwt.encode(claims, TOKEN_SECRET, algorithm="HS256")


@app.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None, "username": ""})


@app.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]
) -> Response:
    expected = USERS.get(username)
    if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
        context = {"error": "Unknown user or wrong password.", "username": username}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    request.session["user"] = username
    return RedirectResponse("/", status_code=303)


@app.post("/logout")
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@app.get("/", response_class=HTMLResponse)
async def board(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    context = {"user": user, "token": connection_token(user), "channel": CHANNEL}
    return templates.TemplateResponse(request, "board.html", context)


@app.get("/token", response_class=PlainTextResponse)
async def token(request: Request) -> Response:
    user = current_user(request)
    return PlainTextResponse(connection_token(user), headers={"Cache-Control": "no-store"})


@app.post("/announce")
async def announce(
    request: Request, text: Annotated[str, Form(min_length=1, max_length=MAX_TEXT)]
) -> dict[str, str | int]:
    user = current_user(request)
    # The JSON of pushwire's chat demo and `pushwire chat`: they show it as "user: text".
    data = json.dumps({"nick": user, "text": text, "ts": int(time.time() * 1000)})
    message = await hub.publish(CHANNEL, data)  # to every subscriber, on any transport
    return {"channel": message.channel, "offset": message.offset}
