"""The three ways a pushwire server decides who may do what, for the authorization matrix
(tests/integration/test_auth_matrix.py), each as a running server and as the identities,
channels and refusals one test uses.

- `jwt`: `pushwire serve --jwt-secret ... --config` with namespaces: connection tokens,
  channel rules, a token's `channels` claim. The demo app's `on_connect` handler (it adds
  the transport to the info) makes every door await its connect.
- `jwt-hub`: the same tokens and namespaces in an in-process `Hub` without any handler,
  where nothing is awaited: the raw doors then connect and check the channel inline
  (`Access.connect_now`, `Access.check_subscribe`), a path `pushwire serve` never takes.
- `handlers`: an in-process `App` whose `Hub` has `on_connect`, `on_subscribe` and
  `on_publish` handlers.
- `jwt-hub-asgi`, `handlers-asgi`: those two hubs served by the ASGI door
  (`pushwire.asgi`) on uvicorn: every refusal the native server gives, the ASGI door gives
  (no TCP port: an ASGI server has none).
- `proxy`: `pushwire serve --connect-proxy ... --subscribe-proxy ... --publish-proxy ...`
  asking tests/proxy_backend.py, a real backend process.

The in-process hubs are served by `pushwire.server.listener.Server` on loopback ports from a
thread of their own.

Each decider gives `Cases` for a test's `tag` (a suffix that makes its users and channels its
own: no session or message of another test is in the way, and a count of sessions is exact).
"""

from __future__ import annotations

import asyncio
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import jwt
import uvicorn

from pushwire import App, Config, ConnectRequest, Forbidden, Hub, Session, asgi
from pushwire.auth.namespaces import Namespace, parse_namespaces
from pushwire.message import Data
from pushwire.server.listener import Server
from tests.proxy_backend import running_backend
from tests.servers import ServerProcess, start_server

__all__ = [
    "API_KEY",
    "CODES",
    "DECIDERS",
    "Address",
    "Cases",
    "Credential",
    "Refusal",
    "SendCase",
    "handlers_hub",
    "jwt_hub",
    "jwt_server",
    "proxy_server",
    "running_asgi_hub",
    "running_hub",
]

API_KEY: Final = "the-api-key-of-the-matrix"
SECRET: Final = "the secret of the matrix's tokens, long enough"

#: docs/security.md, "Codes of a refusal": an error code's HTTP status and close code.
CODES: Final = {
    "unauthorized": (401, 4102),
    "token_expired": (401, 4005),
    "forbidden": (403, 4101),
    "unavailable": (503, 1011),
    "bad_request": (400, 4100),
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A documented refusal: the error envelope's code and message; its HTTP status and
    close code follow from the code (`CODES`)."""

    code: str
    message: str

    @property
    def status(self) -> int:
        return CODES[self.code][0]

    @property
    def close_code(self) -> int:
        return CODES[self.code][1]


@dataclass(frozen=True, slots=True)
class Credential:
    """What a client shows: the user it claims (`hello`'s `user`, a raw client's `?user=`)
    and its token (`hello`'s `token`, a raw client's `?token=` or `Authorization: Bearer`)."""

    claim: str | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class SendCase:
    """A client that must not get user X's direct messages: refused at connect (`refusal`),
    or let in as somebody else (`user`: who it is, None for nobody)."""

    credential: Credential
    refusal: Refusal | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Cases:
    """One test's identities and channels under one decider.

    `user`, proved by `alice`, is the one every allowed action is done as. `lobby` is a
    channel every signed-in user may read and write (where "gets nothing" checks wait for a
    later message, and where presence is on). `guarded` is read by `reader` only: `outsider`
    is refused with `guarded_refusal` (subscribe, history); `read_refused` are the decider's
    other refusals to read a channel, by name: (who, channel, refusal). Publishing
    `talk_data` to `talk` is allowed; `refused_publish` is (channel, data, refusal). `quiet`
    is a channel `quiet_reader` may read, in a namespace with presence off."""

    user: str
    alice: Credential
    connect_refused: Mapping[str, tuple[Credential, Refusal]]
    lobby: str
    guarded: str
    reader: Credential
    outsider: Credential
    guarded_refusal: Refusal
    talk: str
    talk_data: str
    refused_publish: tuple[str, str, Refusal]
    quiet: str
    quiet_reader: Credential
    send_refused: Mapping[str, SendCase] = field(default_factory=dict)
    read_refused: Mapping[str, tuple[Credential, str, Refusal]] = field(default_factory=dict)


# -- JWT ------------------------------------------------------------------------------------

JWT_NAMESPACES: Final = """
[namespaces.chat]
subscribe = "authenticated"
publish = "members"

[namespaces.news]
subscribe = "anyone"
publish = "nobody"

[namespaces.dm]
subscribe = "authenticated"
publish = "members"
users_in_name = true

[namespaces.vip]
subscribe = "token"
publish = "members"
presence = false
"""


def token(user: str, secret: str = SECRET, **claims: object) -> str:
    return jwt.encode({"sub": user, "exp": time.time() + 600, **claims}, secret, "HS256")


def jwt_cases(tag: str) -> Cases:
    alice, bob, carol = f"alice{tag}", f"bob{tag}", f"carol{tag}"
    guarded, quiet = f"dm:{alice},{bob}", f"vip:lounge{tag}"
    news, private = f"news:today{tag}", f"$chat:ops{tag}"
    forged = token(alice, secret="another secret, just as long as the real one")
    return Cases(
        user=alice,
        alice=Credential(alice, token(alice)),
        connect_refused={
            "no-token": (
                Credential(alice),  # a claim is no credential
                Refusal("unauthorized", "a connection token is required"),
            ),
            "bad-signature": (
                Credential(alice, forged),
                Refusal("unauthorized", "invalid token: bad signature"),
            ),
        },
        lobby=f"chat:lobby{tag}",
        guarded=guarded,
        reader=Credential(alice, token(alice)),
        outsider=Credential(carol, token(carol)),
        guarded_refusal=Refusal("forbidden", f"{guarded!r} is for the users its name lists"),
        talk=f"chat:talk{tag}",
        talk_data="hello",
        refused_publish=(
            news,
            "hello",
            Refusal("forbidden", f"only the server publishes to {news!r}"),
        ),
        quiet=quiet,
        quiet_reader=Credential(alice, token(alice, channels=[quiet])),
        read_refused={
            # A `token` namespace, and a token whose `channels` claim does not grant it.
            "no-grant": (
                Credential(alice, token(alice)),
                quiet,
                Refusal("forbidden", f"subscribing to {quiet!r} needs a token that grants it"),
            ),
            # A private channel, and no subscription token (a raw client can give none).
            "private": (
                Credential(alice, token(alice)),
                private,
                Refusal(
                    "forbidden", f"{private!r} is private: subscribing needs a subscription token"
                ),
            ),
        },
        send_refused={
            "proves-another": SendCase(Credential(alice, token(bob)), user=bob),
            "no-proof": SendCase(
                Credential(alice), Refusal("unauthorized", "a connection token is required")
            ),
        },
    )


def jwt_hub() -> Hub:
    """The tokens and namespaces of `jwt_server`, in a hub without any handler."""
    config = Config(port=0, tcp_port=0, api_key=API_KEY, jwt_secret=SECRET)
    namespaces = parse_namespaces(tomllib.loads(JWT_NAMESPACES)["namespaces"])
    return Hub(config=config, namespaces=namespaces)


@contextmanager
def jwt_server(directory: Path) -> Iterator[ServerProcess]:
    config = directory / "jwt.toml"
    config.write_text(JWT_NAMESPACES)
    server = start_server(
        "--jwt-secret", SECRET, "--api-key", API_KEY, "--config", str(config), "--tcp-port", "0"
    )
    try:
        yield server
    finally:
        server.stop()


# -- the app's handlers ----------------------------------------------------------------------


def handlers_cases(tag: str) -> Cases:
    alice, bob, root = f"alice{tag}", f"bob{tag}", f"root{tag}"
    staff, news = f"staff{tag}", f"news{tag}"
    return Cases(
        user=alice,
        alice=Credential(alice, f"pass:{alice}"),
        connect_refused={
            "banned": (
                Credential("mallory", "pass:mallory"),
                Refusal("forbidden", "mallory is banned"),
            ),
            "forged": (Credential(alice, "forged"), Refusal("forbidden", "that is no pass")),
        },
        lobby=f"lobby{tag}",
        guarded=staff,
        reader=Credential(root, f"pass:{root}"),
        outsider=Credential(alice, f"pass:{alice}"),
        guarded_refusal=Refusal("forbidden", f"subscription to {staff!r} refused"),
        talk=news,
        talk_data="fine words",
        refused_publish=(news, "spam, spam", Refusal("forbidden", f"publish to {news!r} refused")),
        quiet=f"quiet:room{tag}",
        quiet_reader=Credential(alice, f"pass:{alice}"),
        send_refused={
            "proves-another": SendCase(Credential(alice, f"pass:{bob}"), user=bob),
            # The app lets a client without a pass in, as nobody.
            "no-proof": SendCase(Credential(alice), user=None),
            "forged": SendCase(
                Credential(alice, "forged"), Refusal("forbidden", "that is no pass")
            ),
        },
    )


def handlers_hub() -> Hub:
    """A hub whose app decides in Python: a pass (`pass:<user>`) proves who a client is,
    a claim without one is nobody, mallory is banned; `staff*` channels are for `root*`
    users; nothing with "spam" in it is published."""
    config = Config(port=0, tcp_port=0, api_key=API_KEY)
    hub = Hub(
        config=config,
        namespaces=[
            Namespace("", subscribe="anyone", publish="anyone"),
            Namespace("quiet", subscribe="anyone", publish="anyone", presence=False),
        ],
    )

    @hub.on_connect
    def on_connect(request: ConnectRequest) -> str | None:
        if request.user == "mallory":
            raise Forbidden("mallory is banned")
        if request.token is None:
            return None  # a claim is no proof: let in as nobody
        kind, _, user = request.token.partition(":")
        if kind != "pass" or not user:
            raise Forbidden("that is no pass")
        return user

    @hub.on_subscribe
    def on_subscribe(session: Session, channel: str) -> bool:
        return not channel.startswith("staff") or (session.user or "").startswith("root")

    @hub.on_publish
    async def on_publish(session: Session, channel: str, data: Data) -> bool:
        return not (isinstance(data, str) and "spam" in data)

    return hub


@dataclass(frozen=True, slots=True)
class Address:
    """Where an in-process server listens."""

    host: str
    port: int
    tcp_port: int | None


@contextmanager
def running_hub(make_hub: Callable[[], Hub]) -> Iterator[Address]:
    """The hub `make_hub` makes (in the server's loop) in an `App`, served on loopback ports
    by an event loop in a thread of its own (the tests' clients block), shut down on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="matrix-hub", daemon=True)
    thread.start()

    async def start() -> Server:
        hub = make_hub()
        await hub.broker.start()
        server = Server(App(hub), hub.config)
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = server.sockets[0].getsockname()[1]
    tcp_port = server.tcp_servers[0].sockets[0].getsockname()[1]
    try:
        yield Address("127.0.0.1", port, tcp_port)
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def running_asgi_hub(make_hub: Callable[[], Hub]) -> Iterator[Address]:
    """`running_hub`, served by the ASGI door (`pushwire.asgi`) on uvicorn instead: the
    same cells, the same answers (no TCP port: an ASGI server has none)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="matrix-asgi", daemon=True)
    thread.start()

    async def start() -> uvicorn.Server:
        hub = make_hub()
        app = asgi(hub)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)  # uvicorn sets a flag, no event: look again soon
        tasks.append(serving)
        return server

    tasks: list[asyncio.Future[None]] = []
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Address("127.0.0.1", port, None)
    finally:
        server.should_exit = True
        asyncio.run_coroutine_threadsafe(asyncio.wait(tasks), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- the backend proxy -----------------------------------------------------------------------

PROXY_NAMESPACES: Final = """
[namespaces.chat]
subscribe = "authenticated"
publish = "authenticated"

[namespaces.secret]
subscribe = "authenticated"
publish = "members"

[namespaces.quiet]
subscribe = "authenticated"
publish = "authenticated"
presence = false
"""


def proxy_cases(tag: str) -> Cases:
    """tests/proxy_backend.py's rules: `user:<name>` proves a user; `secret:*` channels are
    for `admin`; "forbidden words" are not published."""
    alice, bob = f"alice{tag}", f"bob{tag}"
    return Cases(
        user=alice,
        alice=Credential(alice, f"user:{alice}"),
        connect_refused={
            "no-credential": (Credential(alice), Refusal("unauthorized", "sign in first")),
            "banned": (Credential(alice, "refuse"), Refusal("forbidden", "you are banned")),
            "backend-fails": (
                Credential(alice, "status:500"),
                Refusal("unavailable", "the app's backend answered 500 to the connect question"),
            ),
        },
        lobby=f"chat:lobby{tag}",
        guarded=f"secret:plans{tag}",
        reader=Credential("admin", "user:admin"),
        outsider=Credential(alice, f"user:{alice}"),
        guarded_refusal=Refusal("forbidden", "not for you"),
        talk=f"chat:talk{tag}",
        talk_data="hello",
        refused_publish=(
            f"chat:talk{tag}",
            "forbidden words",
            Refusal("forbidden", "mind your language"),
        ),
        quiet=f"quiet:room{tag}",
        quiet_reader=Credential(alice, f"user:{alice}"),
        send_refused={
            "proves-another": SendCase(Credential(alice, f"user:{bob}"), user=bob),
            "no-proof": SendCase(Credential(alice), Refusal("unauthorized", "sign in first")),
        },
    )


@contextmanager
def proxy_server(directory: Path) -> Iterator[ServerProcess]:
    config = directory / "proxy.toml"
    config.write_text(PROXY_NAMESPACES)
    with running_backend() as backend:
        server = start_server(
            "--connect-proxy", backend.url("/connect"),
            "--subscribe-proxy", backend.url("/subscribe"),
            "--publish-proxy", backend.url("/publish"),
            "--api-key", API_KEY, "--config", str(config), "--tcp-port", "0",
        )  # fmt: skip
        try:
            yield server
        finally:
            server.stop()


#: Each decider's cases, by name.
DECIDERS: Final[dict[str, Callable[[str], Cases]]] = {
    "jwt": jwt_cases,
    "jwt-hub": jwt_cases,
    "handlers": handlers_cases,
    # The ASGI door (on uvicorn) over the two in-process hubs.
    "jwt-hub-asgi": jwt_cases,
    "handlers-asgi": handlers_cases,
    "proxy": proxy_cases,
}
