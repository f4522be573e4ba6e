"""`pushwire serve` and `pushwire publish`."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import configfile
from .app import App
from .auth.namespaces import Namespace
from .auth.proxy import BackendProxy
from .broker.base import Broker
from .config import Config
from .core import ConnectRequest, Hub
from .errors import Unavailable
from .routing import Router
from .version import __version__

#: `pushwire publish`: attempts after the first when the server answers 503 or the connection
#: is lost, and the backoff (seconds) between them: uniform(0, min(max, delay * 2**(n-1))).
PUBLISH_RETRIES = 5
PUBLISH_DELAY = 0.5
PUBLISH_DELAY_MAX = 8.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushwire", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pushwire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the server with the demo app")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="HTTP/WebSocket port (0: any)")
    serve.add_argument(
        "--tcp-port", type=int, default=None, help="raw TCP transport port (0: any; off if unset)"
    )
    serve.add_argument("--tls-cert", default=None, help="PEM certificate: TLS on every port")
    serve.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    serve.add_argument("--broker", default="memory", help="memory or redis://host:port/db")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin scheme://host[:port] allowed besides the server's own and "
        "loopback ('*': any)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="Host name served besides the bound host and loopback names, e.g. the public name "
        "behind a proxy ('*': any); other Hosts get 421 (DNS rebinding)",
    )
    serve.add_argument(
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="extra WebSocket subprotocol (raw mode), in order of preference",
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="settings",
        help="set any limit of pushwire.config.Config, e.g. --set max_message=65536",
    )
    serve.add_argument(
        "--no-websocket",
        action="store_true",
        help="refuse WebSocket upgrades (403), as a blocking proxy would: clients fall back",
    )
    serve.add_argument(
        "--per-ip-exempt-loopback",
        action="store_true",
        help="loopback addresses are not bound by max_connections_per_ip (a local proxy)",
    )
    serve.add_argument("--log-level", default="info", help="debug, info, warning, error")
    auth = serve.add_argument_group(
        "who may do what (docs/security.md); without any, only a loopback address is served"
    )
    auth.add_argument("--config", default=None, metavar="FILE", help="TOML: [auth], [namespaces]")
    auth.add_argument(
        "--jwt-secret",
        default=None,
        help="HS256 secret of the tokens (better: PUSHWIRE_JWT_SECRET)",
    )
    auth.add_argument("--jwt-public-key", default=None, metavar="PEM", help="RS256/ES256 key file")
    auth.add_argument("--jwks", default=None, metavar="FILE", help="JWKS file of the tokens' keys")
    auth.add_argument("--jwt-audience", default=None, help="the aud a token must name")
    auth.add_argument("--jwt-issuer", default=None, help="the iss a token must have")
    auth.add_argument(
        "--anonymous", action="store_true", help="let connections without a token in, as no user"
    )
    auth.add_argument(
        "--api-key", default=None, help="the key of the HTTP API (better: PUSHWIRE_API_KEY)"
    )
    auth.add_argument(
        "--insecure",
        action="store_true",
        help="serve an open demo on a non-loopback address on purpose (anyone is anyone)",
    )
    proxy = serve.add_argument_group(
        "the backend proxy: the app's backend decides, asked over HTTP (docs/security.md)"
    )
    proxy.add_argument(
        "--connect-proxy", default=None, metavar="URL", help="asked who connects (authentication)"
    )
    proxy.add_argument(
        "--subscribe-proxy", default=None, metavar="URL", help="asked about each subscription"
    )
    proxy.add_argument(
        "--publish-proxy", default=None, metavar="URL", help="asked about each publish"
    )
    proxy.add_argument(
        "--proxy-header",
        action="append",
        default=[],
        metavar="NAME",
        dest="proxy_headers",
        help="a client request header passed on to the backend; repeat for more "
        "(default: Cookie and Authorization; no other is ever passed on)",
    )

    chat = commands.add_parser("chat", help="a terminal chat room on any transport")
    chat.add_argument("url", help="the server, e.g. http://127.0.0.1:8000 or tcp://127.0.0.1:7000")
    chat.add_argument("--nick", default=None, help="your name (default: your login name)")
    chat.add_argument("--room", default="lobby", help="the room (channel) to join")
    chat.add_argument(
        "--transport",
        action="append",
        default=[],
        metavar="NAME",
        help="websocket, sse, stream, longpoll, polling or tcp; repeat for a fallback order",
    )

    publish = commands.add_parser("publish", help="publish a message to a channel")
    publish.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    publish.add_argument("channel")
    publish.add_argument("message", help="text to publish; '-' reads stdin")
    publish.add_argument("--binary", action="store_true", help="publish the bytes as binary")
    publish.add_argument(
        "--api-key",
        default=os.environ.get("PUSHWIRE_API_KEY"),
        help="the server's API key (default: PUSHWIRE_API_KEY)",
    )
    publish.add_argument(
        "--idempotency-key",
        default=None,
        metavar="KEY",
        help="sent as Idempotency-Key, the same on every attempt (default: a random one)",
    )
    publish.add_argument(
        "--retries",
        type=int,
        default=PUBLISH_RETRIES,
        metavar="N",
        help=f"attempts after a 503 or a lost connection (default {PUBLISH_RETRIES})",
    )
    _add_doctor(commands)
    return parser


def _add_doctor(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor", help="check a deployment from outside: WebSocket, buffering, timeouts, TLS"
    )
    doctor.add_argument("url", help="where clients reach pushwire, e.g. https://rt.example.com")
    doctor.add_argument(
        "--endpoint", default="/echo", help="the endpoint to try (default /echo: echoes back)"
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="wait per step (default 5)"
    )
    doctor.add_argument(
        "--slow",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="a streamed event later than this is a warning (default 1)",
    )
    doctor.add_argument(
        "--idle-check",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long an idle connection must survive (default 5; 0: skip)",
    )
    doctor.add_argument("--cafile", default=None, help="PEM of the CA(s) to trust (https)")
    doctor.add_argument("--token", default=None, help="connection token, if the endpoint needs one")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "publish":
        return _publish(args)
    if args.command == "chat":
        return _chat(args)
    if args.command == "doctor":
        return _doctor(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (args.tls_cert is None) != (args.tls_key is None):
        print("pushwire serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.broker != "memory" and not args.broker.startswith(("redis://", "rediss://")):
        print(
            f"pushwire serve: --broker is memory or redis://…, not {args.broker!r}", file=sys.stderr
        )
        return 2
    missing = args.broker != "memory" and _missing("redis", "redis", "--broker redis://…")
    if missing:
        print(f"pushwire serve: {missing}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("pushwire serve: --workers needs a number from 1", file=sys.stderr)
        return 2
    if args.workers > 1 and args.broker == "memory":
        print(
            "pushwire serve: --workers needs --broker redis://…: worker processes share no "
            "memory, so with the memory broker a message would reach only one worker's clients",
            file=sys.stderr,
        )
        return 2
    from .serve import run, run_workers

    try:
        settings = parse_settings(args.settings)
        loaded = configfile.load(args.config)
    except ValueError as exc:
        print(f"pushwire serve: {exc}", file=sys.stderr)
        return 2
    flags = {
        "jwt_secret": args.jwt_secret,
        "jwt_public_key_file": args.jwt_public_key,
        "jwks_file": args.jwks,
        "jwt_audience": args.jwt_audience,
        "jwt_issuer": args.jwt_issuer,
        "anonymous": args.anonymous or None,
        "api_key": args.api_key,
        "connect_proxy": args.connect_proxy,
        "subscribe_proxy": args.subscribe_proxy,
        "publish_proxy": args.publish_proxy,
        "proxy_headers": tuple(args.proxy_headers) or None,
    }
    auth = {**loaded.fields, **{name: value for name, value in flags.items() if value is not None}}
    config = dataclasses.replace(
        Config(
            host=args.host,
            port=args.port,
            allow_origins=tuple(args.allow_origin),
            allow_hosts=tuple(args.allow_host),
            subprotocols=tuple(args.subprotocol),
            tcp_port=args.tcp_port,
            broker=args.broker,
            websocket=not args.no_websocket,
            per_ip_exempt_loopback=args.per_ip_exempt_loopback,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        ),
        **auth,
        **settings,
    )
    refusal = refuse_to_start(config, insecure=args.insecure)
    if refusal is not None:
        print(f"pushwire serve: {refusal}", file=sys.stderr)
        return 2
    make_app = functools.partial(build_app, namespaces=loaded.namespaces, insecure=args.insecure)
    try:
        make_app(config)  # a wrong key file or JWKS stops here, in one line
    except (OSError, ValueError) as exc:
        print(f"pushwire serve: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return run_workers(make_app, config, args.workers)
    try:
        run(make_app(config))
    except Unavailable as exc:
        print(f"pushwire serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _missing(module: str, extra: str, what: str) -> str | None:
    """None when `module` imports; else one line saying which extra of pushwire brings it."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != module:
            raise  # the module is there but something it needs is not: a real error
        return f"{what} needs {module}: install pushwire[{extra}] (pip install 'pushwire[{extra}]')"
    return None


def refuse_to_start(config: Config, *, insecure: bool) -> str | None:
    """Why an open server must not start here (None: it may): secure by default, an address
    other than a loopback one needs authentication, or `--insecure` to say it is meant."""
    if insecure or _loopback(config.host):
        return None
    if config.jwt_secret or config.jwt_public_key_file or config.jwks_file:
        return None
    if config.connect_proxy:
        return None
    return (
        f"{config.host} is not a loopback address and no authentication is configured: give "
        "--jwt-secret (or PUSHWIRE_JWT_SECRET), --jwt-public-key, --jwks or --connect-proxy, "
        "and --api-key, or --insecure to serve an open demo on purpose"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_app(
    config: Config, namespaces: tuple[Namespace, ...] | None = None, insecure: bool = False
) -> App:
    """The demo app with the broker `config.broker` names and the channel `namespaces`
    (module level: workers spawn it); `insecure`: the chat page says it is an open demo."""
    if config.broker == "memory":
        return App(_demo_hub(None, config, namespaces), config, insecure=insecure)
    # Only a Redis deployment needs redis-py (the pushwire[redis] extra).
    from .broker.redis import RedisBroker, RedisNodes

    broker = RedisBroker(
        config.broker,
        history_size=config.history_size,
        history_ttl=config.history_ttl,
        history_bytes=config.history_bytes,
        idempotency_ttl=config.idempotency_ttl,
        max_pending=config.broker_max_pending,
        timeout=config.broker_timeout,
        reconnect_min=config.broker_reconnect_min,
        reconnect_max=config.broker_reconnect_max,
        presence_ttl=config.presence_ttl,
        inbox_size=config.inbox_size,
        inbox_bytes=config.inbox_bytes,
        inbox_ttl=config.inbox_ttl,
    )
    app = App(_demo_hub(broker, config, namespaces), config, insecure=insecure)
    # Sessions without sticky load balancing: any node serves any session's requests.
    link = RedisNodes(broker, config.node_ttl)
    app.router = Router(app.hub, app.polls, app.sessions, link, config)
    return app


def _demo_hub(
    broker: Broker | None, config: Config, namespaces: tuple[Namespace, ...] | None
) -> Hub:
    hub = Hub(broker, config, namespaces=namespaces, proxy=BackendProxy.from_config(config))

    @hub.on_connect
    def identify(request: ConnectRequest) -> dict[str, Any]:
        # The user is the one the token or the app's backend proved (or, in an open server,
        # the one the client claims); the others see (presence) the info they gave, and
        # which transport each person joined over.
        return {"user": request.user, "info": {**request.info, "via": request.transport}}

    return hub


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs for the numeric fields of `Config`, converted to the field's type.

    Raises:
        ValueError: unknown name, or a value that is not a number of the right kind.
    """
    numeric: dict[str, type[int] | type[float]] = {}
    for setting in dataclasses.fields(Config):
        if isinstance(setting.default, bool) or setting.name in ("port", "tcp_port"):
            continue
        if isinstance(setting.default, int | float):
            numeric[setting.name] = type(setting.default)
    settings: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        kind = numeric.get(name)
        if kind is None:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(numeric))}")
        try:
            settings[name] = kind(value)
        except ValueError:
            wanted = "an integer" if kind is int else "a number"
            raise ValueError(f"setting {name} needs {wanted}, not {value!r}") from None
    return settings


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import Options, run

    options = Options(
        args.endpoint, args.timeout, args.slow, args.idle_check, args.cafile, args.token
    )
    try:
        return run(args.url, options)
    except ValueError as exc:
        print(f"pushwire doctor: {exc}", file=sys.stderr)
        return 2


def _chat(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from .chat import run_chat

    missing = _missing("prompt_toolkit", "chat", "pushwire chat")
    if missing:
        print(missing, file=sys.stderr)
        return 2
    nick = args.nick or getpass.getuser()
    transports = args.transport or (
        ["tcp"] if args.url.startswith("tcp") else ["websocket", "sse", "stream", "longpoll"]
    )
    try:
        return asyncio.run(run_chat(args.url, nick, args.room, transports))
    except KeyboardInterrupt:
        return 0


def _publish(args: argparse.Namespace) -> int:
    """POST the message with an idempotency key through `pushwire.api`: after a 503 or a lost
    connection it goes again with the same key (the server publishes it once), backing off,
    up to `--retries` times."""
    import orjson

    from .api import Client
    from .errors import ApiError

    text: str = sys.stdin.read() if args.message == "-" else args.message
    data: str | bytes = text.encode() if args.binary else text

    def tell(problem: str, delay: float) -> None:
        print(f"pushwire publish: {problem}; again in {delay:.1f} s", file=sys.stderr)

    try:
        with Client(
            args.url,
            api_key=args.api_key,
            retries=args.retries,
            backoff=PUBLISH_DELAY,
            backoff_max=PUBLISH_DELAY_MAX,
            on_retry=tell,
        ) as client:
            published = client.publish(args.channel, data, idempotency_key=args.idempotency_key)
    except (ApiError, ValueError) as exc:
        print(f"pushwire publish: {exc}", file=sys.stderr)
        return 1
    answer = {"channel": published.channel, "epoch": published.epoch, "offset": published.offset}
    print(orjson.dumps(answer).decode())
    return 0
