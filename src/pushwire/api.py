"""The HTTP API's client, for backends: publish, send, presence, history and disconnect from
a Django or FastAPI view, a worker or a script, sync (`Client`) or async (`AsyncClient`).

```python
from pushwire.api import Client

api = Client("http://127.0.0.1:8000", api_key=os.environ["PUSHWIRE_API_KEY"])
published = api.publish("room", "hello")  # str is text, bytes is binary
print(published.epoch, published.offset)
```

`url` is where pushwire is served (a prefix such as `https://example.com/rt` where it is
mounted); calls go to `url + "/api/..."` with `Authorization: Bearer <api_key>`.

Retries (`retries` times after the first attempt, backing off
`uniform(0, min(backoff_max, backoff * 2**(n-1)))` seconds):

- `publish` sends an `Idempotency-Key` (the one given, or a random one per call), the same on
  every attempt, so it is retried after a 503 (or a proxy's 502 or 504), a lost connection or
  a timeout: the server publishes it once (docs/delivery.md).
- `presence`, `history` and `disconnect` change nothing twice, and are retried the same way.
- `send` has no idempotency key: it is retried only when the request was not sent (the
  connection could not be made), never after it may have arrived (then `ApiUnavailable`
  says so).

Errors (`pushwire.errors`): `ApiKeyRefused` (401/403: no key, a wrong one, or the API is
off), `ApiRefused` (any other error answer, with the server's reason), `ApiUnavailable` (no
answer after every attempt).
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import httpx
import orjson

from .errors import ApiError, ApiKeyRefused, ApiRefused, ApiUnavailable

__all__ = [
    "AsyncClient",
    "Client",
    "Disconnected",
    "History",
    "HistoryMessage",
    "Presence",
    "Published",
    "Sent",
]

#: Attempts after the first, and the backoff between them (seconds), by default.
RETRIES: Final = 5
BACKOFF: Final = 0.5
BACKOFF_MAX: Final = 8.0
#: Seconds for each attempt's connect, write and read, by default.
TIMEOUT: Final = 10.0

#: Answers after which a call goes again: pushwire's 503 (broker down, shutting down) and a
#: proxy's 502 and 504 in front of it.
RETRIED_STATUSES: Final = frozenset({502, 503, 504})
_MAYBE_ARRIVED: Final = "it may or may not have arrived (not retried: no idempotency key)"

#: Told `(problem, delay)` before each retry: what went wrong, and how long until the next
#: attempt (the command line prints it).
RetryCallback = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class Published:
    """A message's place in its channel (with a repeated idempotency key: the first's)."""

    channel: str
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Sent:
    """A direct message's place in its user's inbox; `nodes`: how many nodes had a session
    of the user; `sessions`: how many sessions got it (only known with one process)."""

    user: str
    epoch: str
    offset: int
    nodes: int
    sessions: int | None


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is in a channel on every node: `count` members, `members` their entries (`user`,
    `info`, ...: docs/protocol.md), at most `presence_max_members` (`truncated` when more)."""

    channel: str
    count: int
    members: list[Mapping[str, object]]
    truncated: bool


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    epoch: str
    offset: int
    data: str | bytes


@dataclass(frozen=True, slots=True)
class History:
    """The messages a channel's history keeps (after `since` when asked), oldest first; the
    channel's last position; `complete`: whether history reaches back to `since` (else the
    messages before the first one are lost)."""

    channel: str
    epoch: str
    offset: int
    complete: bool
    messages: list[HistoryMessage]


@dataclass(frozen=True, slots=True)
class Disconnected:
    """How many sessions of the user were closed."""

    user: str
    sessions: int


@dataclass(frozen=True, slots=True)
class _Call:
    method: Literal["GET", "POST"]
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    #: "always": retried after any failure; "unsent": only when the request was not sent.
    retry: Literal["always", "unsent"] = "always"


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _body(data: str | bytes) -> tuple[bytes, dict[str, str]]:
    if isinstance(data, bytes):
        return data, {"Content-Type": "application/octet-stream"}
    return data.encode(), {"Content-Type": "text/plain; charset=utf-8"}


def _publish_call(channel: str, data: str | bytes, idempotency_key: str | None) -> _Call:
    body, headers = _body(data)
    headers["Idempotency-Key"] = idempotency_key or secrets.token_urlsafe(16)
    return _Call("POST", f"/api/publish/{_quoted(channel)}", body, headers)


def _send_call(user: str, data: str | bytes) -> _Call:
    body, headers = _body(data)
    return _Call("POST", f"/api/send/{_quoted(user)}", body, headers, retry="unsent")


def _history_call(channel: str, since: tuple[str, int] | None) -> _Call:
    query = "" if since is None else "?since=" + _quoted(f"{since[0]}:{since[1]}")
    return _Call("GET", f"/api/history/{_quoted(channel)}{query}")


def _published(answer: dict[str, object]) -> Published:
    return Published(str(answer["channel"]), str(answer["epoch"]), _int(answer["offset"]))


def _sent(answer: dict[str, object]) -> Sent:
    sessions = answer.get("sessions")
    return Sent(
        str(answer["user"]),
        str(answer["epoch"]),
        _int(answer["offset"]),
        _int(answer["nodes"]),
        None if sessions is None else _int(sessions),
    )


def _presence(answer: dict[str, object]) -> Presence:
    members = answer["members"]
    assert isinstance(members, list)
    return Presence(
        str(answer["channel"]), _int(answer["count"]), members, bool(answer["truncated"])
    )


def _history(answer: dict[str, object]) -> History:
    messages = answer["messages"]
    assert isinstance(messages, list)
    return History(
        str(answer["channel"]),
        str(answer["epoch"]),
        _int(answer["offset"]),
        bool(answer["complete"]),
        [
            HistoryMessage(
                str(item["epoch"]),
                _int(item["offset"]),
                item["data"] if "data" in item else base64.b64decode(item["data64"]),
            )
            for item in messages
        ],
    )


def _disconnected(answer: dict[str, object]) -> Disconnected:
    return Disconnected(str(answer["user"]), _int(answer["sessions"]))


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise ApiError(f"unexpected answer from the server: {value!r} is not an integer")
    return value


class _Attempts:
    """One call's attempts: what each answer or failure means, and the wait before the next."""

    def __init__(
        self,
        call: _Call,
        retries: int,
        backoff: float,
        backoff_max: float,
        on_retry: RetryCallback | None,
    ) -> None:
        self.call = call
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.on_retry = on_retry
        self.failed = 0
        self.problem = ""

    def answer(self, response: httpx.Response) -> dict[str, object] | None:
        """The answer's JSON, or None when the call goes again (a retried 503).

        Raises:
            ApiKeyRefused, ApiRefused: an error answer.
            ApiUnavailable: a 503, and no attempt left.
        """
        status = response.status_code
        if status == 200:
            try:
                answer = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                answer = None
            if not isinstance(answer, dict):
                raise ApiError(f"unexpected answer from the server: {response.text[:100]!r}")
            return answer
        reason = f"{status} {response.text.strip()}"
        if status in (401, 403):
            raise ApiKeyRefused(reason, status)
        if status not in RETRIED_STATUSES:
            raise ApiRefused(reason, status)
        if self.call.retry != "always":
            raise ApiUnavailable(f"{reason}: {_MAYBE_ARRIVED}", status)
        self._failed(reason, status)
        return None

    def transport_failed(self, exc: httpx.TransportError) -> None:
        """Note a failure to get an answer.

        Raises:
            ApiUnavailable: it may not be retried, or no attempt is left.
        """
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        problem = str(exc) or type(exc).__name__
        if self.call.retry == "unsent" and not unsent:
            raise ApiUnavailable(f"{problem}: {_MAYBE_ARRIVED}") from exc
        try:
            self._failed(problem, None)
        except ApiUnavailable as given_up:
            raise given_up from exc

    def _failed(self, problem: str, status: int | None) -> None:
        self.failed += 1
        self.problem = problem
        if self.failed > self.retries:
            raise ApiUnavailable(f"{problem} (gave up after {self.failed} attempts)", status)

    def delay(self) -> float:
        """Seconds before the next attempt (told to `on_retry`)."""
        delay = random.uniform(0, min(self.backoff_max, self.backoff * 2 ** (self.failed - 1)))
        if self.on_retry is not None:
            self.on_retry(self.problem, delay)
        return delay


class _Base:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        retries: int,
        backoff: float,
        backoff_max: float,
        on_retry: RetryCallback | None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url[:40]!r}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.on_retry = on_retry
        self._auth = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}

    def _attempts(self, call: _Call) -> _Attempts:
        return _Attempts(call, self.retries, self.backoff, self.backoff_max, self.on_retry)

    def _headers(self, call: _Call) -> dict[str, str]:
        return {**self._auth, **(call.headers or {})}


class Client(_Base):
    """The HTTP API, blocking (see the module docstring). Safe to share between threads;
    `close()` (or `with`) releases its connections.

    Args:
        url: where pushwire is served, e.g. `http://127.0.0.1:8000`.
        api_key: the server's API key (`--api-key`, `PUSHWIRE_API_KEY`); None for an open
            server.
        timeout: seconds for each attempt's connect, write and read.
        retries, backoff, backoff_max: attempts after the first, and the wait between them.
        on_retry: told `(problem, delay)` before each retry.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        backoff: float = BACKOFF,
        backoff_max: float = BACKOFF_MAX,
        on_retry: RetryCallback | None = None,
    ) -> None:
        super().__init__(url, api_key, retries, backoff, backoff_max, on_retry)
        self._http = httpx.Client(timeout=timeout)

    def publish(
        self, channel: str, data: str | bytes, *, idempotency_key: str | None = None
    ) -> Published:
        """Publish to `channel` on every node (str is text, bytes binary); published once
        however often it is retried."""
        return _published(self._call(_publish_call(channel, data, idempotency_key)))

    def send(self, user: str, data: str | bytes) -> Sent:
        """Send a direct message to every session of `user`, on every node, kept in the
        user's inbox for the sessions that are away."""
        return _sent(self._call(_send_call(user, data)))

    def presence(self, channel: str) -> Presence:
        """Who is in `channel`, on every node."""
        return _presence(self._call(_Call("GET", f"/api/presence/{_quoted(channel)}")))

    def history(self, channel: str, since: tuple[str, int] | None = None) -> History:
        """The messages `channel`'s history keeps, after `since` (`(epoch, offset)`, e.g.
        from a `Published`) when given."""
        return _history(self._call(_history_call(channel, since)))

    def disconnect(self, user: str) -> Disconnected:
        """Close every session of `user` (close 4101: its clients stop; none can resume).

        Raises:
            ApiRefused: 501 with a broker that spans processes (Redis): not supported there.
        """
        return _disconnected(self._call(_Call("POST", f"/api/disconnect/{_quoted(user)}")))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, call: _Call) -> dict[str, object]:
        attempts = self._attempts(call)
        while True:
            try:
                response = self._http.request(
                    call.method,
                    self.url + call.path,
                    content=call.body,
                    headers=self._headers(call),
                )
            except httpx.TransportError as exc:
                attempts.transport_failed(exc)
            else:
                answer = attempts.answer(response)
                if answer is not None:
                    return answer
            time.sleep(attempts.delay())


class AsyncClient(_Base):
    """The HTTP API for asyncio code; the same calls as `Client`, awaited. `aclose()` (or
    `async with`) releases its connections. Cancelling a call stops its retries; a publish
    cancelled mid-way may have been published (call it again with the same idempotency key
    to be sure, once)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        backoff: float = BACKOFF,
        backoff_max: float = BACKOFF_MAX,
        on_retry: RetryCallback | None = None,
    ) -> None:
        super().__init__(url, api_key, retries, backoff, backoff_max, on_retry)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def publish(
        self, channel: str, data: str | bytes, *, idempotency_key: str | None = None
    ) -> Published:
        """See `Client.publish`."""
        return _published(await self._call(_publish_call(channel, data, idempotency_key)))

    async def send(self, user: str, data: str | bytes) -> Sent:
        """See `Client.send`."""
        return _sent(await self._call(_send_call(user, data)))

    async def presence(self, channel: str) -> Presence:
        """See `Client.presence`."""
        return _presence(await self._call(_Call("GET", f"/api/presence/{_quoted(channel)}")))

    async def history(self, channel: str, since: tuple[str, int] | None = None) -> History:
        """See `Client.history`."""
        return _history(await self._call(_history_call(channel, since)))

    async def disconnect(self, user: str) -> Disconnected:
        """See `Client.disconnect`."""
        return _disconnected(await self._call(_Call("POST", f"/api/disconnect/{_quoted(user)}")))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(self, call: _Call) -> dict[str, object]:
        attempts = self._attempts(call)
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    self.url + call.path,
                    content=call.body,
                    headers=self._headers(call),
                )
            except httpx.TransportError as exc:
                attempts.transport_failed(exc)
            else:
                answer = attempts.answer(response)
                if answer is not None:
                    return answer
            await asyncio.sleep(attempts.delay())
