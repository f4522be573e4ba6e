"""Which browser origins and which Host names may talk to pushwire: one policy for every door
(WebSocket upgrades, the HTTP transports' CORS, the iframe's target, the Flash policy file).

Origins. Allowed: no Origin header (not a browser), the server's own origin (the request's
Host, when that Host is allowed), loopback origins (`localhost`, `127.0.0.1`, `[::1]`) on any
port and scheme, and the configured origins ("*" allows all). An Origin is `scheme://host[:port]`
and nothing else (RFC 6454 6.1): userinfo, a path, a query or a fragment, a scheme other than
http and https, `null`, a bad port, or anything that does not parse is refused.

Hosts, against DNS rebinding: a page on `evil.example` whose name the attacker points at the
server is same-origin with it, so the Origin check cannot see it; its requests carry
`Host: evil.example`. Allowed Host names: the one the server is bound to, the loopback names,
(bound to a wildcard address) the machine's host name, and the configured ones ("*": any).
A request without Host (HTTP/1.0, not a browser) is served.

Hosts are compared as the browser serializes them: IDNA (ASCII) form, lower case, IPv6
literals in brackets, ports apart; a default port (80 for http, 443 for https) is no port.
Python's `idna` codec implements IDNA 2003: a Unicode name written in the configuration that
IDNA 2008 maps differently (say `ß`) does not match what the browser sends, and is refused,
never wrongly allowed; write such names in their `xn--` form.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from .config import Config
from .errors import ConfigError, Forbidden, MisdirectedRequest
from .parsing import quoted

__all__ = [
    "DEFAULT_PORTS",
    "LOOPBACK_HOSTS",
    "Origin",
    "OriginPolicy",
    "canonical_host",
    "default_hosts",
    "parse_host",
    "parse_origin",
]

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: Addresses that bind every interface: the server answers to names it cannot list.
WILDCARD_ADDRESSES: Final = frozenset({"", "0.0.0.0", "::", "[::]"})

# A host name after IDNA: what WHATWG URL allows in a domain, minus what no DNS name holds.
_HOST_NAME: Final = re.compile(r"[a-z0-9_.-]+")
_HEX: Final = frozenset("0123456789abcdef")
#: Parsed origins and hosts kept for the next request (an attacker's unique values only evict).
_CACHE_SIZE: Final = 1024


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed origin: scheme, canonical host, and port (None: the scheme's default)."""

    scheme: str
    host: str
    port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def effective_port(self) -> int:
        return DEFAULT_PORTS[self.scheme] if self.port is None else self.port


def canonical_host(name: str) -> str:
    """`name` as pushwire compares hosts: IDNA ASCII form, lower case, IPv6 in brackets.

    Raises:
        ValueError: not a host name, an IPv4 address or a bracketed IPv6 address.
    """
    if name.startswith("["):
        if not name.endswith("]"):
            raise ValueError(f"unclosed '[' in host {name!r}")
        literal = name[1:-1]
        if "%" in literal:  # browsers refuse zone identifiers in URLs
            raise ValueError(f"IPv6 zone identifier in host {name!r}")
        try:
            return f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            raise ValueError("malformed host in brackets") from None
    if not name:
        raise ValueError("no host")
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
        ascii_name.encode("ascii").decode("idna")  # an `xn--` label must be valid punycode
    except UnicodeError:
        raise ValueError(f"host {name!r} is not a valid IDNA name") from None
    if not _HOST_NAME.fullmatch(ascii_name):
        raise ValueError(f"bad character in host {name!r}")
    # WHATWG URL: a host whose last label is a number is an IPv4 address, which a browser
    # writes in dotted decimal (`0x7f.1` is 127.0.0.1): anything else is not its serialization.
    last = ascii_name.removesuffix(".").rpartition(".")[2]
    if last.isdigit() or (last.startswith("0x") and all(c in _HEX for c in last[2:])):
        try:
            address = ipaddress.IPv4Address(ascii_name)
        except ValueError:
            raise ValueError(f"bad IPv4 address {name!r}") from None
        if str(address) != ascii_name:
            raise ValueError(f"bad IPv4 address {name!r}")
    return ascii_name


def _split_authority(authority: str) -> tuple[str, int | None]:
    """`host[:port]` into the canonical host and the port (None when absent)."""
    if authority.startswith("["):
        end = authority.find("]") + 1
        if end == 0:
            raise ValueError(f"unclosed '[' in {authority!r}")
        host, rest = authority[:end], authority[end:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after the IPv6 address in {authority!r}")
        port_text: str | None = rest[1:] if rest else None
    else:
        host, colon, after = authority.partition(":")  # a second ':' lands in the port: refused
        port_text = after if colon else None
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            raise ValueError(f"bad port {port_text!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range (1-65535)")
    return canonical_host(host), port


def parse_origin(text: str) -> Origin:
    """An Origin header value (or an allowed origin) as an `Origin`.

    Raises:
        ValueError: `text` is not exactly `scheme://host[:port]` with scheme http or https.
    """
    if text == "null":
        raise ValueError("'null' is the origin of sandboxed and local pages of any site")
    # urlsplit drops tabs and newlines and strips spaces (as WHATWG URL does): a header that
    # holds them is not a browser's serialization.
    if not text.isprintable() or " " in text:
        raise ValueError("space or control character in the origin")
    try:
        parts = urlsplit(text)
    except ValueError:  # brackets that do not hold an IPv6 address (wording varies by Python)
        raise ValueError("malformed host in brackets") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme {parts.scheme!r} is not http or https")
    if not text[len(parts.scheme) :].startswith("://"):
        raise ValueError("not scheme://host[:port]")
    if parts.path or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("an origin has no path, query or fragment")
    if "@" in parts.netloc:
        raise ValueError("an origin has no user name or password")
    host, port = _split_authority(parts.netloc)
    return Origin(scheme, host, None if port == DEFAULT_PORTS[scheme] else port)


def parse_host(value: str) -> tuple[str, int | None]:
    """A Host header (`host[:port]`) as the canonical host and the port (None when absent).

    Raises:
        ValueError: not a host and an optional port.
    """
    if not value.isprintable() or any(c in value for c in " /?#@\\"):
        raise ValueError("not host[:port]")
    # RFC 9110 7.2 allows an empty port ("host:"): no port.
    return _split_authority(value.removesuffix(":"))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _origin_or_none(text: str) -> Origin | None:
    try:
        return parse_origin(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _host_or_none(value: str) -> tuple[str, int | None] | None:
    try:
        return parse_host(value)
    except ValueError:
        return None


def _host_entry(entry: str) -> str:
    """A configured host (`HOST`, `HOST:PORT`, or a bare IPv6 address): its canonical name."""
    try:
        return f"[{ipaddress.IPv6Address(entry).compressed}]"
    except ValueError:
        return parse_host(entry)[0]


def default_hosts(bound: str) -> frozenset[str]:
    """The Host names served by default: the loopback names and the bound host, or for a
    wildcard address (every interface), the machine's host name."""
    hosts = set(LOOPBACK_HOSTS)
    name = socket.gethostname() if bound in WILDCARD_ADDRESSES else bound
    try:
        hosts.add(_host_entry(name))
    except ValueError:
        if bound not in WILDCARD_ADDRESSES:
            raise  # a host the server binds to is one it can be reached by
        # A machine's host name that is not a valid host (say, with a space) cannot be in a
        # Host header either: nothing to add.
    return frozenset(hosts)


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which browser origins and Host names are served (see the module docstring).

    `OriginPolicy()` allows the loopback origins and names only; `from_config` adds the
    server's bound host and the configured ones.
    """

    #: Origins allowed besides the server's own and the loopback ones.
    origins: frozenset[Origin] = frozenset()
    #: "*" among the allowed origins: any origin.
    any_origin: bool = False
    #: Host names served (canonical, no port).
    hosts: frozenset[str] = field(default=LOOPBACK_HOSTS)
    #: "*" among the allowed hosts: any Host.
    any_host: bool = False
    #: Host header values answered (`allows_host`): a client sends the same one each time.
    #: Bounded (`_CACHE_SIZE`, emptied when full): an attacker's unique values only evict.
    _served: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, config: Config) -> OriginPolicy:
        """The policy of `config.allow_origins` and `config.allow_hosts`, each entry parsed
        as a request's would be (an allowed origin may end with one "/").

        Raises:
            ConfigError: an entry that is not an origin (or a host); the message names it.
        """
        origins: set[Origin] = set()
        for entry in config.allow_origins:
            if entry == "*":
                continue
            try:
                origins.add(parse_origin(entry.removesuffix("/")))
            except ValueError as exc:
                raise ConfigError(f"allowed origin {entry!r}: {exc}") from exc
        try:
            hosts = set(default_hosts(config.host))
        except ValueError as exc:
            raise ConfigError(f"bound host {config.host!r}: {exc}") from exc
        for entry in config.allow_hosts:
            if entry == "*":
                continue
            try:
                hosts.add(_host_entry(entry))
            except ValueError as exc:
                raise ConfigError(f"allowed host {entry!r}: {exc}") from exc
        return cls(
            frozenset(origins),
            any_origin="*" in config.allow_origins,
            hosts=frozenset(hosts),
            any_host="*" in config.allow_hosts,
        )

    def allows_host(self, host: str | None) -> bool:
        """Whether a request with this Host header is served (None: no Host header)."""
        if host is None or self.any_host:
            return True
        served = self._served.get(host)
        if served is None:
            parsed = _host_or_none(host)
            served = parsed is not None and parsed[0] in self.hosts
            if len(self._served) >= _CACHE_SIZE:
                self._served.clear()
            self._served[host] = served
        return served

    def check_host(self, host: str | None) -> None:
        """Refuse a request whose Host is not served.

        Raises:
            MisdirectedRequest: the Host names a site this server does not serve.
        """
        if not self.allows_host(host):
            raise MisdirectedRequest(f"host {quoted(host)} is not served here")

    def allowed_origin(self, origin: str, host: str | None) -> Origin | None:
        """`origin` parsed, if allowed for a request with this Host header; else None."""
        parsed = _origin_or_none(origin)
        if parsed is None:
            return None
        if self.any_origin or parsed.host in LOOPBACK_HOSTS or parsed in self.origins:
            return parsed
        if host is None or not self.allows_host(host):
            return None
        own = _host_or_none(host)
        if own is None or own[0] != parsed.host:
            return None
        own_port = own[1]
        # A Host without a port is the default port of whichever scheme the client used.
        same_port = parsed.port is None if own_port is None else own_port == parsed.effective_port
        return parsed if same_port else None

    def allows(self, origin: str | None, host: str | None, *, any_origin: bool = False) -> bool:
        """Whether a request with this Origin (None: no Origin header) and Host is allowed;
        `any_origin`: the endpoint takes every origin (`/echo`)."""
        if origin is None or any_origin:
            return True
        return self.allowed_origin(origin, host) is not None

    def cors_headers(
        self, origin: str | None, host: str | None, *, any_origin: bool = False
    ) -> list[tuple[str, str]]:
        """The CORS headers that let `origin` read an answer (none without an Origin header).

        Raises:
            Forbidden: the origin is not allowed.
        """
        if origin is None:
            return []
        if not self.allows(origin, host, any_origin=any_origin):
            raise Forbidden(f"origin {quoted(origin)} is not allowed")
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "Pushwire-Cursor, Retry-After"),
            ("Vary", "Origin"),
        ]

    def flash_domains(self) -> Iterable[str]:
        """The domains of the Flash cross-domain policy: the hosts of the allowed origins and
        the loopback names ("*": every domain)."""
        if self.any_origin:
            return ["*"]
        return sorted(LOOPBACK_HOSTS | {origin.host for origin in self.origins})
