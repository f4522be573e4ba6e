"""`pushwire serve` and `pushwire publish`."""

from __future__ import annotations

import argparse
import functools
import importlib
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from . import configfile, doctor, options
from .app import App
from .auth.namespaces import Namespace
from .auth.proxy import BackendProxy
from .broker.base import Broker
from .config import Config
from .core import ConnectRequest, Hub
from .errors import ConfigError, Unavailable
from .logs import FORMATS, LEVELS
from .logs import setup as setup_logging
from .options import Source, describe
from .ratelimit import Networks
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
    serve.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="HTTP/WebSocket port (0: any)")
    serve.add_argument(
        "--tcp-port", type=int, default=None, help="raw TCP transport port (0: any; off if unset)"
    )
    serve.add_argument("--tls-cert", default=None, help="PEM certificate: TLS on every port")
    serve.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    serve.add_argument(
        "--broker",
        default=None,
        help="memory (the default), redis://host:port/db, a Redis Cluster: "
        "redis+cluster://host:port[,host:port…], or independent Redis servers: "
        "redis+shards://host:port,host:port[,…]",
    )
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="browser origin scheme://host[:port] allowed besides the server's own and "
        "loopback ('*': any)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=None,
        metavar="HOST",
        help="Host name served besides the bound host and loopback names, e.g. the public name "
        "behind a proxy ('*': any); other Hosts get 421 (DNS rebinding)",
    )
    serve.add_argument(
        "--subprotocol",
        action="append",
        default=None,
        metavar="NAME",
        help="extra WebSocket subprotocol (raw mode), in order of preference",
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="settings",
        help="set any setting of pushwire.config.Config, e.g. --set max_message=65536",
    )
    serve.add_argument(
        "--no-websocket",
        action="store_const",
        const=True,
        help="refuse WebSocket upgrades (403), as a blocking proxy would: clients fall back",
    )
    serve.add_argument(
        "--per-ip-exempt-loopback",
        action="store_const",
        const=True,
        help="loopback addresses are not bound by the per-address limits (a local proxy)",
    )
    serve.add_argument(
        "--trust-proxy",
        action="append",
        default=None,
        metavar="ADDR",
        help="a proxy (address or CIDR block) whose X-Forwarded-For names the client, for the "
        "per-address limits and the logs; repeatable",
    )
    serve.add_argument(
        "--limit-exempt",
        action="append",
        default=None,
        metavar="ADDR",
        help="an address or CIDR block exempt from the per-address limits and session rates; "
        "repeatable",
    )
    serve.add_argument(
        "--log-level",
        default=None,
        type=str.lower,
        choices=LEVELS,
        help="of every process (default info)",
    )
    serve.add_argument(
        "--log-format", default=None, choices=FORMATS, help="text (default) or json, one per line"
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting, its value and where it came from (flag, env, file, "
        "default), secrets masked, and exit",
    )
    auth = serve.add_argument_group(
        "who may do what (docs/security.md); without any, only a loopback address is served"
    )
    auth.add_argument(
        "--config", default=None, metavar="FILE", help="TOML: [server], [auth], [namespaces]"
    )
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
        "--anonymous",
        action="store_const",
        const=True,
        help="let connections without a token in, as no user",
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
        default=None,
        metavar="NAME",
        dest="proxy_headers",
        help="a client request header passed on to the backend; repeat for more "
        "(default: Cookie and Authorization; no other is ever passed on)",
    )

    _setting_flags(serve)

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
    chat.add_argument("--token", help="connection token (JWT); default: $PUSHWIRE_TOKEN")

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
    doctor.add_arguments(commands.add_parser("doctor", help=doctor.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"publish": _publish, "chat": _chat, "doctor": doctor.command}.get(args.command)
    if command is not None:
        return command(args)
    from .serve import run, run_workers

    try:
        loaded = configfile.load(args.config)
        values = {**loaded.fields, **parse_settings(args.settings), **_flag_values(args)}
        sources = {**loaded.sources, **dict.fromkeys(_given(args), Source.FLAG)}
        config = Config(**values)
        _check(config)
        if args.print_config:
            print(describe(config, sources))
            return 0
        setup_logging(config.log_level, config.log_format)
    except (TypeError, ValueError) as exc:
        print(f"pushwire serve: {exc}", file=sys.stderr)
        return 2
    missing = config.broker != "memory" and _missing("redis", "redis", "--broker redis://…")
    if missing:
        print(f"pushwire serve: {missing}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("pushwire serve: --workers needs a number from 1", file=sys.stderr)
        return 2
    if args.workers > 1 and config.broker == "memory":
        print(
            "pushwire serve: --workers needs --broker redis://…: worker processes share no "
            "memory, so with the memory broker a message would reach only one worker's clients",
            file=sys.stderr,
        )
        return 2
    try:
        Networks(config.trust_proxy), Networks(config.limit_exempt)
    except ValueError as exc:
        print(f"pushwire serve: trust_proxy / limit_exempt: {exc}", file=sys.stderr)
        return 2
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
    except (Unavailable, ConfigError) as exc:  # ConfigError: not a Redis Cluster
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
    from .broker.redis import RedisNodes
    from .broker.redis.configured import redis_broker

    broker = redis_broker(config)  # one Redis, a Redis Cluster, or Redis shards
    app = App(_demo_hub(broker, config, namespaces), config, insecure=insecure)
    # Sessions without sticky load balancing: any node serves any session's requests.
    link = RedisNodes(broker, config.node_ttl)
    app.router = Router(app.hub, app.polls, app.sessions, link, config)
    return app


def _demo_hub(
    broker: Broker | None, config: Config, namespaces: tuple[Namespace, ...] | None
) -> Hub:
    hub = Hub(broker, config, namespaces=namespaces, proxy=BackendProxy.from_config(config))
    vias: dict[str, dict[str, Any]] = {}  # one info per transport, shared, where none was given

    @hub.on_connect
    def identify(request: ConnectRequest) -> dict[str, Any]:
        # The user the token or the app's backend proved (open: the one claimed); the others
        # see (presence) the info given and the transport each joined over.
        via = request.transport
        info = {**request.info, "via": via} if request.info else vias.setdefault(via, {"via": via})
        return {"user": request.user, "info": info}

    return hub


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs (`--set`) for any field of `Config`, converted to the field's type
    (`pushwire.options.parse_value`).

    Raises:
        ValueError: unknown name, or a value that is not of the field's type.
    """
    known = options.schema()
    settings: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        setting = known.get(name)
        if setting is None:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
        settings[name] = options.parse_value(setting, value)
    return settings


#: The `serve` flags that keep their own spelling: argparse destination -> `Config` field.
#: (`--no-websocket` sets `websocket` to false; every other field gets `--name-with-dashes`.)
NAMED_FLAGS: Final[Mapping[str, str]] = {
    "host": "host",
    "port": "port",
    "tcp_port": "tcp_port",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "broker": "broker",
    "allow_origin": "allow_origins",
    "allow_host": "allow_hosts",
    "subprotocol": "subprotocols",
    "per_ip_exempt_loopback": "per_ip_exempt_loopback",
    "trust_proxy": "trust_proxy",
    "limit_exempt": "limit_exempt",
    "log_level": "log_level",
    "log_format": "log_format",
    "jwt_secret": "jwt_secret",
    "jwt_public_key": "jwt_public_key_file",
    "jwks": "jwks_file",
    "jwt_audience": "jwt_audience",
    "jwt_issuer": "jwt_issuer",
    "anonymous": "anonymous",
    "api_key": "api_key",
    "connect_proxy": "connect_proxy",
    "subscribe_proxy": "subscribe_proxy",
    "publish_proxy": "publish_proxy",
    "proxy_headers": "proxy_headers",
}


def _setting_flags(serve: argparse.ArgumentParser) -> None:
    options.add_flags(serve, [*NAMED_FLAGS.values(), "websocket"])


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (`--set` aside), by `Config` field."""
    values = options.flag_values(args)
    for dest, name in NAMED_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    if args.no_websocket:
        values["websocket"] = False
    return values


def _given(args: argparse.Namespace) -> list[str]:
    """The settings this command line sets, `--set` included."""
    return [*_flag_values(args), *parse_settings(args.settings)]


def _check(config: Config) -> None:
    """What `Config` itself does not check of what flags, environment and file gave.

    Raises:
        ValueError: a one-line reason.
    """
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    # One Redis, a Redis Cluster, Redis shards: each plain or over TLS.
    schemes = tuple(f"redis{s}{k}://" for k in ("", "+cluster", "+shards") for s in ("", "s"))
    if config.broker != "memory" and not config.broker.startswith(schemes):
        raise ValueError(
            "--broker is memory, redis://…, redis+cluster://… or redis+shards://…, "
            f"not {config.broker!r}"
        )
    if config.log_level.lower() not in LEVELS:
        raise ValueError(f"--log-level is one of {', '.join(LEVELS)}, not {config.log_level!r}")
    if config.log_format not in FORMATS:
        raise ValueError(f"--log-format is one of {', '.join(FORMATS)}, not {config.log_format!r}")


def _chat(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from .chat import run_chat

    if missing := _missing("prompt_toolkit", "chat", "pushwire chat"):
        print(missing, file=sys.stderr)
        return 2
    nick = args.nick or getpass.getuser()
    transports = args.transport or (
        ["tcp"] if args.url.startswith("tcp") else ["websocket", "sse", "stream", "longpoll"]
    )
    try:
        token = args.token or os.environ.get("PUSHWIRE_TOKEN")
        return asyncio.run(run_chat(args.url, nick, args.room, transports, token))
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
