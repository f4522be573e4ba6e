"""The backend proxy's client: the answers it takes, and each bound, against a real backend
process (tests/proxy_backend.py) on a loopback port."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from pushwire.auth.proxy import Admission, BackendProxy, admission_of, parse_answer
from pushwire.config import Config
from pushwire.errors import BackendUnavailable, Forbidden, Unauthorized
from tests.proxy_backend import Backend, running_backend

# -- answers (no I/O) ---------------------------------------------------------------------------


def test_a_result_is_what_the_backend_allows() -> None:
    result = parse_answer("connect", b'{"result": {"user": "alice", "info": {"name": "Alice"}}}')
    assert admission_of(result) == Admission("alice", {"name": "Alice"}, frozenset(), None)
    assert parse_answer("subscribe", b'{"result": {}}') == {}


def test_an_allowed_connect_may_grant_channels_and_expire() -> None:
    result = {"user": None, "channels": ["vip:lounge"], "expires": 1700000000}
    assert admission_of(result) == Admission(None, {}, frozenset({"vip:lounge"}), 1700000000.0)


@pytest.mark.parametrize(
    ("answer", "refusal", "message"),
    [
        (b'{"error": {"code": 4101, "message": "not a member"}}', Forbidden, "not a member"),
        (b'{"error": {"code": 4102, "message": "sign in"}}', Unauthorized, "sign in"),
        (b'{"error": {"code": 4102}}', Unauthorized, "refused by the app's backend"),
    ],
)
def test_an_error_is_a_refusal_with_the_backends_message(
    answer: bytes, refusal: type[Exception], message: str
) -> None:
    with pytest.raises(refusal) as refused:
        parse_answer("subscribe", answer)
    assert type(refused.value) is refusal
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("x" * 120, "x" * 120),
        ("x" * 121, "x" * 120),
        ("é" * 61, "é" * 60),  # 2 bytes each: whole characters within 120 bytes
        ("line one\nline two\x00", "line one line two"),
        (" ", "refused by the app's backend"),
    ],
)
def test_a_refusals_message_is_one_line_that_fits_a_close_frame(message: str, shown: str) -> None:
    answer = orjson.dumps({"error": {"code": 4101, "message": message}})
    with pytest.raises(Forbidden) as refused:
        parse_answer("publish", answer)
    assert str(refused.value) == shown


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"error": "no"}', '"error" is not an object'),
        (b'{"error": {"code": 4000}}', "unknown error code 4000"),
        (b'{"error": {"code": "4101"}}', "unknown error code '4101'"),
        (b'{"ok": true}', 'no "result" object and no "error"'),
        (b'{"result": []}', 'no "result" object and no "error"'),
    ],
)
def test_anything_else_is_no_usable_answer(answer: bytes, what: str) -> None:
    with pytest.raises(BackendUnavailable) as failed:
        parse_answer("connect", answer)
    assert (
        str(failed.value)
        == f"the app's backend's answer to the connect question is unusable: {what}"
    )
    assert (failed.value.http_status, failed.value.close_code) == (503, 1011)
    assert failed.value.error_code == "unavailable"


@pytest.mark.parametrize(
    ("result", "what"),
    [
        ({"user": 7}, '"user" must be a non-empty string or null'),
        ({"user": ""}, '"user" must be a non-empty string or null'),
        ({"user": "a", "info": "x"}, '"info" must be an object'),
        ({"user": "a", "channels": "x"}, '"channels" must be a list of channel names'),
        ({"user": "a", "channels": [1]}, '"channels" must be a list of channel names'),
        ({"user": "a", "expires": "soon"}, '"expires" must be a number (seconds since the epoch)'),
        ({"user": "a", "expires": True}, '"expires" must be a number (seconds since the epoch)'),
    ],
)
def test_a_connect_result_of_the_wrong_shape_is_no_usable_answer(
    result: dict[str, object], what: str
) -> None:
    with pytest.raises(
        BackendUnavailable, match="unusable: " + what.replace("(", r"\(").replace(")", r"\)")
    ):
        admission_of(result)


def test_only_the_listed_headers_are_passed_on_by_lower_case_name() -> None:
    proxy = BackendProxy(connect="http://127.0.0.1:1/connect", headers=("Cookie", "X-Tenant"))
    headers = [
        ("cookie", "a=1"),
        ("x-secret", "no"),
        ("cookie", "b=2"),
        ("X-Tenant", "t1"),
        ("authorization", "Bearer no"),
    ]
    assert proxy.forwarded(headers) == {"cookie": "a=1; b=2", "x-tenant": "t1"}


@pytest.mark.parametrize("url", ["ftp://backend/connect", "backend/connect", "http://"])
def test_a_proxy_url_is_http_or_https(url: str) -> None:
    with pytest.raises(ValueError, match=r"^the connect proxy needs an http:// or https:// URL$"):
        BackendProxy(connect=url)


def test_the_config_names_the_proxy_and_its_bounds() -> None:
    assert BackendProxy.from_config(Config()) is None
    proxy = BackendProxy.from_config(
        Config(subscribe_proxy="https://app.example/pushwire/subscribe", proxy_timeout=1.5)
    )
    assert proxy is not None
    assert (proxy.connects, proxy.subscribes, proxy.publishes) == (False, True, False)
    assert (proxy.timeout, proxy.max_concurrent, proxy.max_answer) == (1.5, 100, 65536)


# -- against a real backend ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with running_backend() as running:
        yield running


@pytest.fixture
async def proxy(backend: Backend) -> AsyncIterator[BackendProxy]:
    proxy = BackendProxy(
        connect=backend.url("/connect"),
        subscribe=backend.url("/subscribe"),
        publish=backend.url("/publish"),
        timeout=1.0,
        max_concurrent=2,
        max_answer=1000,
    )
    yield proxy
    await proxy.close()


async def ask(proxy: BackendProxy, token: str | None, cookie: str | None = None) -> Admission:
    headers = proxy.forwarded([("cookie", cookie)] if cookie else [])
    return await proxy.connect(
        transport="websocket", path="/pushwire", remote="127.0.0.1", user="mallory",
        token=token, headers=headers,
    )  # fmt: skip


@pytest.mark.integration
async def test_the_backend_says_who_connects(proxy: BackendProxy, backend: Backend) -> None:
    assert await ask(proxy, "user:alice") == Admission(
        "alice", {"name": "Alice"}, frozenset(), None
    )
    assert (await ask(proxy, None, "session=bob")).user == "bob"
    asked = backend.requests("/connect")[-1]
    assert asked == {
        "transport": "websocket",
        "path": "/pushwire",
        "remote": "127.0.0.1",
        "user": "mallory",
        "token": None,
        "headers": {"cookie": "session=bob"},
    }
    with pytest.raises(Unauthorized, match=r"^sign in first$"):
        await ask(proxy, None)
    with pytest.raises(Forbidden, match=r"^you are banned$"):
        await ask(proxy, "refuse")


@pytest.mark.integration
async def test_subscribe_and_publish_questions(proxy: BackendProxy, backend: Backend) -> None:
    await proxy.subscribe(
        user="alice", channel="chat:lobby", info={"name": "Alice"}, headers={"cookie": "c=1"}
    )
    with pytest.raises(Forbidden, match=r"^not for you$"):
        await proxy.subscribe(user="alice", channel="secret:plans", info={}, headers={})
    await proxy.publish(user="alice", channel="chat:lobby", data=b"\x00\xff")
    with pytest.raises(Forbidden, match=r"^mind your language$"):
        await proxy.publish(user="alice", channel="chat:lobby", data="forbidden words")
    assert backend.requests("/subscribe")[-2] == {
        "user": "alice",
        "channel": "chat:lobby",
        "session_info": {"name": "Alice"},
        "headers": {"cookie": "c=1"},
    }
    assert backend.requests("/publish")[-2] == {
        "user": "alice",
        "channel": "chat:lobby",
        "data64": base64.b64encode(b"\x00\xff").decode(),
    }


@pytest.mark.integration
async def test_an_answer_just_under_the_timeout_is_taken_one_over_is_refused_in_time(
    proxy: BackendProxy,
) -> None:
    assert (await ask(proxy, "slow:0.3")).user == "slow"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as failed:
        await ask(proxy, "slow:5")
    assert 0.9 < time.monotonic() - started < 2.0
    assert str(failed.value) == "the app's backend did not answer the connect question within 1 s"


@pytest.mark.integration
async def test_an_answer_of_max_answer_bytes_is_read_one_byte_more_is_refused(
    proxy: BackendProxy,
) -> None:
    assert (await ask(proxy, "size:1000")).user == "big"
    with pytest.raises(
        BackendUnavailable, match=r"unusable: over 1000 bytes \(proxy_max_answer\)$"
    ):
        await ask(proxy, "size:1001")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("status:500", "the app's backend answered 500 to the connect question"),
        ("status:302", "the app's backend answered 302 to the connect question"),
        ("garbage", "the app's backend's answer to the connect question is unusable: not JSON"),
    ],
)
async def test_a_status_other_than_200_or_a_body_other_than_json_is_refused(
    proxy: BackendProxy, token: str, message: str
) -> None:
    with pytest.raises(BackendUnavailable) as failed:
        await ask(proxy, token)
    assert str(failed.value) == message


@pytest.mark.integration
async def test_max_concurrent_questions_are_asked_one_more_is_refused_at_once(
    proxy: BackendProxy,
) -> None:
    in_flight = [asyncio.ensure_future(ask(proxy, "slow:0.5")) for _ in range(2)]
    await asyncio.sleep(0)  # each has counted itself and is waiting for its answer
    assert proxy.in_flight == 2
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as failed:
        await ask(proxy, "user:alice")
    assert time.monotonic() - started < 0.1
    assert str(failed.value) == (
        "the app's backend is busy (2 questions in flight, the most proxy_max_concurrent allows)"
    )
    assert [admitted.user for admitted in await asyncio.gather(*in_flight)] == ["slow", "slow"]
    assert proxy.in_flight == 0
    assert (await ask(proxy, "user:alice")).user == "alice"


@pytest.mark.integration
async def test_a_backend_that_is_down_is_refused_at_once() -> None:
    with running_backend() as gone:
        url = gone.url("/connect")
    proxy = BackendProxy(connect=url, timeout=3.0)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as failed:
        await ask(proxy, "user:alice")
    assert time.monotonic() - started < 1.0
    assert str(failed.value) == "the app's backend is unreachable (ConnectError)"
    await proxy.close()
