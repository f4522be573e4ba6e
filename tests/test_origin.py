"""The Origin policy: which browser origins and Host names may talk to pushwire."""

from __future__ import annotations

import socket

import pytest

from pushwire.config import Config
from pushwire.errors import ConfigError, Forbidden, MisdirectedRequest
from pushwire.origin import (
    _CACHE_SIZE,
    Origin,
    OriginPolicy,
    canonical_host,
    parse_host,
    parse_origin,
)

# -- parsing an Origin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("http://example.com", Origin("http", "example.com")),
        ("https://example.com:8443", Origin("https", "example.com", 8443)),
        ("HTTPS://Example.COM", Origin("https", "example.com")),
        ("http://example.com:80", Origin("http", "example.com")),
        ("https://example.com:443", Origin("https", "example.com")),
        ("http://example.com:443", Origin("http", "example.com", 443)),
        ("http://[::1]:8080", Origin("http", "[::1]", 8080)),
        ("http://[0:0:0:0:0:0:0:1]", Origin("http", "[::1]")),
        ("http://[2001:DB8::1]", Origin("http", "[2001:db8::1]")),
        ("http://127.0.0.1:65535", Origin("http", "127.0.0.1", 65535)),
        ("http://bücher.example", Origin("http", "xn--bcher-kva.example")),
        ("http://BÜCHER.example", Origin("http", "xn--bcher-kva.example")),
        ("http://xn--bcher-kva.example", Origin("http", "xn--bcher-kva.example")),
        ("http://XN--BCHER-KVA.example", Origin("http", "xn--bcher-kva.example")),
    ],
)
def test_an_origin_is_parsed_to_its_canonical_form(text: str, parsed: Origin) -> None:
    assert parse_origin(text) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("null", "'null' is the origin of sandboxed and local pages of any site"),
        ("http://localhost:x@evil.example", "an origin has no user name or password"),
        ("http://localhost@evil.example", "an origin has no user name or password"),
        ("http://evil.example\\@localhost", "an origin has no user name or password"),
        ("http://localhost/", "an origin has no path, query or fragment"),
        ("http://localhost/app", "an origin has no path, query or fragment"),
        ("http://localhost?", "an origin has no path, query or fragment"),
        ("http://localhost?x=1", "an origin has no path, query or fragment"),
        ("http://localhost#", "an origin has no path, query or fragment"),
        ("ftp://localhost", "scheme 'ftp' is not http or https"),
        ("file://localhost", "scheme 'file' is not http or https"),
        ("chrome-extension://abcdef", "scheme 'chrome-extension' is not http or https"),
        ("localhost:8000", "scheme 'localhost' is not http or https"),
        ("localhost", "scheme '' is not http or https"),
        ("", "scheme '' is not http or https"),
        ("http:localhost", "not scheme://host[:port]"),
        ("http://", "no host"),
        ("http://:8000", "no host"),
        ("http://localhost:", "bad port ''"),
        ("http://localhost:x", "bad port 'x'"),
        ("http://localhost:+80", "bad port '+80'"),
        ("http://localhost:-1", "bad port '-1'"),
        ("http://localhost:123456", "bad port '123456'"),
        ("http://localhost:65536", "port 65536 out of range (1-65535)"),
        ("http://localhost:0", "port 0 out of range (1-65535)"),
        ("http://localhost:80:80", "bad port '80:80'"),
        ("http://localhost:\uff18\uff10", "bad port '\uff18\uff10'"),
        ("http://[::1]x", "junk after the IPv6 address in '[::1]x'"),
        ("http://[::1%25eth0]", "IPv6 zone identifier in host '[::1%25eth0]'"),
        ("http://[127.0.0.1]", "malformed host in brackets"),
        ("http://[::1", "malformed host in brackets"),
        ("http://[zz::1]", "malformed host in brackets"),
        ("http://::1", "bad port ':1'"),
        ("http://local\thost", "space or control character in the origin"),
        ("http://local host", "space or control character in the origin"),
        (" http://localhost", "space or control character in the origin"),
        ("http://localhost\\.evil.example", "bad character in host 'localhost\\\\.evil.example'"),
        ("http://%6cocalhost", "bad character in host '%6cocalhost'"),
        ("http://a..b", "host 'a..b' is not a valid IDNA name"),
        ("http://xn--zz", "host 'xn--zz' is not a valid IDNA name"),
        ("http://" + "a" * 64 + ".example", f"host '{'a' * 64}.example' is not a valid IDNA name"),
        ("http://127.1", "bad IPv4 address '127.1'"),
        ("http://0x7f.0.0.1", "bad IPv4 address '0x7f.0.0.1'"),
        ("http://a.0x7f", "bad IPv4 address 'a.0x7f'"),
        ("http://2130706433", "bad IPv4 address '2130706433'"),
        ("http://127.000.0.1", "bad IPv4 address '127.000.0.1'"),
        ("http://evil.example.1", "bad IPv4 address 'evil.example.1'"),
    ],
)
def test_anything_but_scheme_host_and_port_is_not_an_origin(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_origin(text)
    assert str(raised.value) == reason


def test_an_origin_prints_as_a_browser_serializes_it() -> None:
    assert str(parse_origin("HTTP://Bücher.Example:80")) == "http://xn--bcher-kva.example"
    assert str(parse_origin("https://[::1]:8443")) == "https://[::1]:8443"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("LOCALHOST", "localhost"),
        ("localhost.", "localhost."),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("[::FFFF:127.0.0.1]", "[::ffff:7f00:1]"),
        ("10.0.0.1", "10.0.0.1"),
        ("under_score.example", "under_score.example"),
        ("a.0xyz", "a.0xyz"),
    ],
)
def test_hosts_are_compared_in_idna_lower_case_and_compressed_ipv6(
    name: str, canonical: str
) -> None:
    assert canonical_host(name) == canonical


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("example.com", ("example.com", None)),
        ("Example.COM:8000", ("example.com", 8000)),
        ("example.com:", ("example.com", None)),
        ("[::1]:8000", ("[::1]", 8000)),
        ("xn--bcher-kva.example", ("xn--bcher-kva.example", None)),
    ],
)
def test_a_host_header_is_a_host_and_a_port(value: str, parsed: tuple[str, int | None]) -> None:
    assert parse_host(value) == parsed


@pytest.mark.parametrize(
    "value",
    ["", "a b", "evil.example/x", "user@evil.example", "evil.example:x", "::1", "[::1", "a..b"],
)
def test_a_malformed_host_header_does_not_parse(value: str) -> None:
    with pytest.raises(ValueError):
        parse_host(value)


# -- the policy -------------------------------------------------------------------------------


def policy(**settings: object) -> OriginPolicy:
    return OriginPolicy.from_config(Config(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "127.0.0.1:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:5173", "127.0.0.1:8000", True),
        ("https://LOCALHOST", "127.0.0.1:8000", True),
        ("http://[::1]:8080", "127.0.0.1:8000", True),
        ("http://[0::1]:8080", "127.0.0.1:8000", True),
        ("http://127.0.0.1", "127.0.0.1:8000", True),
        # The userinfo trick: the host is evil.example, whatever comes before the '@'.
        ("http://localhost:x@evil.example", "127.0.0.1:8000", False),
        ("http://localhost:x@127.0.0.1", "127.0.0.1:8000", False),
        ("http://localhost:8000@evil.example:8000", "evil.example:8000", False),
        ("http://127.0.0.1.evil.example", "127.0.0.1:8000", False),
        ("http://localhost.evil.example", "127.0.0.1:8000", False),
        ("http://evil.example", "127.0.0.1:8000", False),
        ("http://localhost/path", "127.0.0.1:8000", False),
        ("ws://localhost", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        ("", "127.0.0.1:8000", False),
        ("http://localhost:99999", "127.0.0.1:8000", False),
    ],
)
def test_the_default_policy_allows_loopback_origins_only(
    origin: str | None, host: str, allowed: bool
) -> None:
    assert policy().allows(origin, host) is allowed


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("https://chat.example.com", "chat.example.com", True),
        ("http://chat.example.com", "chat.example.com", True),
        ("https://chat.example.com", "chat.example.com:443", True),
        ("https://chat.example.com:443", "chat.example.com", True),
        ("https://CHAT.example.com", "chat.EXAMPLE.com", True),
        ("https://chat.example.com:8080", "chat.example.com:8080", True),
        ("https://chat.example.com:8080", "chat.example.com", False),
        ("https://chat.example.com", "chat.example.com:8080", False),
        ("http://chat.example.com", "chat.example.com:443", False),
        ("https://chat.example.com", "other.example.com", False),
        ("https://chat.example.com", None, False),
        ("https://chat.example.com", "chat.example.com/x", False),
    ],
)
def test_the_servers_own_origin_is_its_allowed_host_and_port(
    origin: str, host: str | None, allowed: bool
) -> None:
    assert policy(allow_hosts=("chat.example.com",)).allows(origin, host) is allowed


def test_the_servers_own_origin_counts_only_when_its_host_is_allowed() -> None:
    # DNS rebinding: evil.example points at the server, and its page is same-origin with it.
    rebinding = ("http://evil.example:8000", "evil.example:8000")
    assert policy().allows(*rebinding) is False
    assert policy(allow_hosts=("evil.example",)).allows(*rebinding) is True
    assert policy(allow_hosts=("*",)).allows(*rebinding) is True


def test_allowed_origins_are_parsed_as_a_browser_sends_them() -> None:
    allowed = policy(allow_origins=("HTTPS://App.Example:443/", "http://bücher.example:8080"))
    assert allowed.allows("https://app.example", "127.0.0.1") is True
    assert allowed.allows("http://xn--bcher-kva.example:8080", "127.0.0.1") is True
    assert allowed.allows("http://app.example", "127.0.0.1") is False
    assert allowed.allows("https://app.example:8443", "127.0.0.1") is False
    assert allowed.allows("https://x:y@app.example", "127.0.0.1") is False
    assert allowed.allows("http://xn--bcher-kva.example", "127.0.0.1") is False


def test_star_allows_every_origin_but_not_what_is_not_one() -> None:
    star = policy(allow_origins=("*",))
    assert star.allows("https://any.example", "127.0.0.1") is True
    assert star.allows("null", "127.0.0.1") is False
    assert star.allows("http://localhost:x@evil.example/", "127.0.0.1") is False


def test_an_endpoint_for_any_origin_takes_even_null() -> None:
    assert policy().allows("null", "127.0.0.1", any_origin=True) is True


def test_cors_headers_name_an_allowed_origin_and_refuse_others() -> None:
    assert policy().cors_headers("http://localhost:3000", "127.0.0.1") == [
        ("Access-Control-Allow-Origin", "http://localhost:3000"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", "Pushwire-Cursor, Retry-After"),
        ("Vary", "Origin"),
    ]
    assert policy().cors_headers(None, "127.0.0.1") == []
    with pytest.raises(Forbidden) as raised:
        policy().cors_headers("http://localhost:x@evil.example", "127.0.0.1")
    assert str(raised.value) == "origin 'http://localhost:x@evil.example' is not allowed"


def test_the_iframe_target_is_the_parsed_origin() -> None:
    assert policy().allowed_origin("HTTP://LocalHost:80", None) == Origin("http", "localhost")
    assert policy().allowed_origin("http://localhost:x@evil.example", None) is None


# -- allowed hosts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),
        ("127.0.0.1", True),
        ("127.0.0.1:8000", True),
        ("localhost:1", True),
        ("LOCALHOST", True),
        ("[::1]:8000", True),
        ("[0:0::1]", True),
        ("evil.example", False),
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("127.0.0.2", False),
        ("", False),
        ("::1", False),
        ("localhost:x", False),
        ("x@localhost", False),
    ],
)
def test_a_loopback_server_serves_the_loopback_names(host: str | None, allowed: bool) -> None:
    assert policy().allows_host(host) is allowed


def test_a_refused_host_is_misdirected() -> None:
    with pytest.raises(MisdirectedRequest) as raised:
        policy().check_host("evil.example:8000")
    assert str(raised.value) == "host 'evil.example:8000' is not served here"
    assert raised.value.http_status == 421


@pytest.mark.parametrize(
    ("bound", "served"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "[::1]"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::7", "[2001:db8::7]"),
        ("Chat.Example.com", "chat.example.com"),
    ],
)
def test_the_bound_host_is_served(bound: str, served: str) -> None:
    bound_policy = policy(host=bound)
    assert bound_policy.hosts == {"localhost", "127.0.0.1", "[::1]", served}
    assert bound_policy.allows_host("other.example") is False


@pytest.mark.parametrize("bound", ["0.0.0.0", "::"])
def test_a_server_on_every_interface_serves_loopback_and_the_machines_name(bound: str) -> None:
    wildcard = policy(host=bound)
    assert wildcard.hosts == {
        "localhost",
        "127.0.0.1",
        "[::1]",
        canonical_host(socket.gethostname()),
    }
    assert wildcard.allows_host("evil.example") is False


def test_allow_host_adds_names_with_or_without_a_port() -> None:
    added = policy(allow_hosts=("Chat.Example.com:443", "bücher.example", "2001:db8::1"))
    assert added.allows_host("chat.example.com:8000") is True
    assert added.allows_host("xn--bcher-kva.example") is True
    assert added.allows_host("[2001:db8::1]:80") is True
    assert added.allows_host("localhost") is True
    assert added.allows_host("evil.example") is False


def test_allow_host_star_serves_any_host() -> None:
    assert policy(allow_hosts=("*",)).allows_host("evil.example") is True


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"allow_origins": ("http://localhost:x@evil.example",)},
            "allowed origin 'http://localhost:x@evil.example': "
            "an origin has no user name or password",
        ),
        (
            {"allow_origins": ("https://app.example/chat",)},
            "allowed origin 'https://app.example/chat': an origin has no path, query or fragment",
        ),
        (
            {"allow_origins": ("app.example",)},
            "allowed origin 'app.example': scheme '' is not http or https",
        ),
        (
            {"allow_origins": ("null",)},
            "allowed origin 'null': 'null' is the origin of sandboxed and local pages of any site",
        ),
        ({"allow_hosts": ("a b",)}, "allowed host 'a b': not host[:port]"),
        (
            {"allow_hosts": ("x:99999",)},
            "allowed host 'x:99999': port 99999 out of range (1-65535)",
        ),
        ({"host": "a..b"}, "bound host 'a..b': host 'a..b' is not a valid IDNA name"),
    ],
)
def test_a_bad_entry_is_a_configuration_error(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        policy(**settings)
    assert str(raised.value) == message


def test_the_flash_policy_lists_loopback_and_the_allowed_origins_hosts() -> None:
    assert list(policy(allow_origins=("https://Chat.Example",)).flash_domains()) == [
        "127.0.0.1",
        "[::1]",
        "chat.example",
        "localhost",
    ]
    assert list(policy(allow_origins=("*",)).flash_domains()) == ["*"]


def test_host_answers_are_kept_bounded_and_stay_right() -> None:
    # A client sends the same Host each time: its answer is kept. An attacker's unique values
    # only evict answers (the memo stays within its bound), never change one.
    policy = OriginPolicy(hosts=frozenset({"chat.example.com"}))
    for i in range(3 * _CACHE_SIZE):
        assert not policy.allows_host(f"evil{i}.example:80")
        assert policy.allows_host("chat.example.com:443")
        assert len(policy._served) <= _CACHE_SIZE
    assert not policy.allows_host("chat.example.com.evil:443")
    assert not policy.allows_host("chat.example.com/x")
    assert policy.allows_host("CHAT.example.com")
