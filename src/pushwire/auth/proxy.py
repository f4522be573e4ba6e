"""The backend proxy: pushwire asks the app's backend, over HTTP, who connects and what they may do.

An app not written in Python (Django, Rails, ...) authorizes its users without running code in
pushwire: for each decision pushwire POSTs a JSON object to the URL configured for it and acts
on the JSON answer (the wire is in docs/security.md, "The backend proxy"):

- connect: `{"transport", "path", "remote", "user", "token", "headers"}` ->
  `{"result": {"user", "info", "channels", "expires"}}`;
- subscribe: `{"user", "channel", "session_info", "headers"}` -> `{"result": {}}`;
- publish: `{"user", "channel", "data" | "data64"}` -> `{"result": {}}`;

or, to refuse, `{"error": {"code": 4101 | 4102, "message": "..."}}` (`Forbidden`,
`Unauthorized`). `headers` are the client's request headers named in `proxy_headers`, and no
other (by default `Cookie` and `Authorization`), names in lower case.

Every other outcome is a `BackendUnavailable` (503, close 1011, `unavailable`), never a hang:
the backend is unreachable, does not answer within `proxy_timeout` seconds (connecting
included), answers another status than 200, more than `proxy_max_answer` bytes, or something
else than the documented JSON; or `proxy_max_concurrent` questions are in flight already in
this process (the next one is refused at once, not queued). Connections to the backend are
pooled (HTTP keep-alive) by one `httpx.AsyncClient` per process, made on the first question
and closed by `close` at shutdown.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from ..config import Config
from ..errors import BackendUnavailable, Forbidden, Unauthorized
from ..message import Data

__all__ = ["Admission", "BackendProxy", "admission_of", "parse_answer"]

#: The error codes an answer may refuse with, and the refusal each is.
REFUSALS: Final[Mapping[int, type[Forbidden | Unauthorized]]] = {
    4101: Forbidden,
    4102: Unauthorized,
}
#: A refusal's message as passed on to the client, bytes of UTF-8 at most: it must fit a
#: WebSocket close reason (RFC 6455 5.5: a control frame's payload is at most 125 bytes,
#: 2 of them the code).
MAX_REASON: Final = 120
#: The message of a refusal whose answer gave none.
DEFAULT_REASON: Final = "refused by the app's backend"
_REQUEST_HEADERS: Final = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": "pushwire (backend proxy)",
}


@dataclass(frozen=True, slots=True)
class Admission:
    """What the connect proxy says of a client it lets in: its user (None: anonymous), the
    public info others see, the channels it may read whatever their rule, and when its
    credential expires (seconds since the epoch; None: never)."""

    user: str | None
    info: Mapping[str, Any]
    channels: frozenset[str]
    expires: float | None


class BackendProxy:
    """Asks the app's backend (see the module docstring); one per process.

    Args:
        connect, subscribe, publish: the URL asked for each decision (None: that decision is
            not the backend's).
        headers: names of the client's request headers passed on (any case).
        timeout: seconds for one question, from sending to the last byte of the answer.
        max_concurrent: questions in flight at most; one more is refused at once.
        max_answer: bytes of an answer read at most.

    Raises:
        ValueError: a URL that is not http:// or https://, or a bound below 1.
    """

    def __init__(
        self,
        *,
        connect: str | None = None,
        subscribe: str | None = None,
        publish: str | None = None,
        headers: Sequence[str] = ("Cookie", "Authorization"),
        timeout: float = 3.0,
        max_concurrent: int = 100,
        max_answer: int = 64 * 1024,
    ) -> None:
        for decision, url in (("connect", connect), ("subscribe", subscribe), ("publish", publish)):
            if url is not None and not _is_http_url(url):
                raise ValueError(f"the {decision} proxy needs an http:// or https:// URL")
        if timeout <= 0 or max_concurrent < 1 or max_answer < 1:
            raise ValueError("proxy_timeout, proxy_max_concurrent and proxy_max_answer must be > 0")
        self._urls = {"connect": connect, "subscribe": subscribe, "publish": publish}
        self._forward = frozenset(name.lower() for name in headers)
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.max_answer = max_answer
        #: Questions sent and not answered yet.
        self.in_flight = 0
        self._http: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, config: Config) -> BackendProxy | None:
        """The proxy `config` describes; None when it names no proxy URL."""
        if not (config.connect_proxy or config.subscribe_proxy or config.publish_proxy):
            return None
        return cls(
            connect=config.connect_proxy,
            subscribe=config.subscribe_proxy,
            publish=config.publish_proxy,
            headers=config.proxy_headers,
            timeout=config.proxy_timeout,
            max_concurrent=config.proxy_max_concurrent,
            max_answer=config.proxy_max_answer,
        )

    @property
    def connects(self) -> bool:
        """Whether the backend decides who connects."""
        return self._urls["connect"] is not None

    @property
    def subscribes(self) -> bool:
        """Whether the backend is asked about each subscription."""
        return self._urls["subscribe"] is not None

    @property
    def publishes(self) -> bool:
        """Whether the backend is asked about each publish."""
        return self._urls["publish"] is not None

    def forwarded(self, headers: Sequence[tuple[str, str]]) -> Mapping[str, str]:
        """The headers of `headers` that are passed on, by lower-case name (repeated ones
        joined: cookies with "; ", RFC 6265 5.4, others with ", ", RFC 9110 5.3)."""
        found: dict[str, str] = {}
        forward = self._forward
        for name, value in headers:
            lower = name.lower()
            if lower not in forward:
                continue
            if lower in found:
                value = found[lower] + ("; " if lower == "cookie" else ", ") + value
            found[lower] = value
        return found

    async def connect(
        self,
        *,
        transport: str,
        path: str,
        remote: str | None,
        user: str | None,
        token: str | None,
        headers: Mapping[str, str],
    ) -> Admission:
        """Who the client is, as the backend says.

        Raises:
            Forbidden, Unauthorized: the backend refused.
            BackendUnavailable: no usable answer (see the module docstring).
        """
        body = {
            "transport": transport,
            "path": path,
            "remote": remote,
            "user": user,
            "token": token,
            "headers": dict(headers),
        }
        return admission_of(await self._ask("connect", body))

    async def subscribe(
        self,
        *,
        user: str | None,
        channel: str,
        info: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        """Return when the backend lets `user` read `channel`.

        Raises:
            Forbidden, Unauthorized: the backend refused.
            BackendUnavailable: no usable answer.
        """
        body = {"user": user, "channel": channel, "session_info": info, "headers": dict(headers)}
        await self._ask("subscribe", body)

    async def publish(self, *, user: str | None, channel: str, data: Data) -> None:
        """Return when the backend lets `user` publish `data` to `channel` (text as `data`,
        bytes as base64 in `data64`).

        Raises:
            Forbidden, Unauthorized: the backend refused.
            BackendUnavailable: no usable answer.
        """
        body: dict[str, Any] = {"user": user, "channel": channel}
        if isinstance(data, str):
            body["data"] = data
        else:
            body["data64"] = base64.b64encode(data).decode("ascii")
        await self._ask("publish", body)

    async def close(self) -> None:
        """Close the pooled connections (at shutdown). A later question opens new ones."""
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()

    # -- one question -----------------------------------------------------------------------

    async def _ask(self, decision: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        url = self._urls[decision]
        if url is None:
            raise ValueError(f"no {decision} proxy is configured")
        if self.in_flight >= self.max_concurrent:
            raise BackendUnavailable(
                f"the app's backend is busy ({self.in_flight} questions in flight, the most "
                "proxy_max_concurrent allows)"
            )
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._post(decision, url, orjson.dumps(body))
        except (TimeoutError, httpx.TimeoutException):
            raise BackendUnavailable(
                f"the app's backend did not answer the {decision} question within "
                f"{self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"the app's backend is unreachable ({type(exc).__name__})"
            ) from exc
        finally:
            self.in_flight -= 1
        return parse_answer(decision, answer)

    async def _post(self, decision: str, url: str, body: bytes) -> bytes:
        client = self._http
        if client is None:
            # Made here, in the running loop, so that building an app (a worker's, or the
            # command line's check of its settings) opens nothing.
            limits = httpx.Limits(
                max_connections=self.max_concurrent, max_keepalive_connections=self.max_concurrent
            )
            client = self._http = httpx.AsyncClient(
                timeout=self.timeout, limits=limits, follow_redirects=False
            )
        limit = self.max_answer
        async with client.stream("POST", url, content=body, headers=_REQUEST_HEADERS) as response:
            if response.status_code != 200:
                raise BackendUnavailable(
                    f"the app's backend answered {response.status_code} to the {decision} question"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_long(decision, limit)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _too_long(decision, limit)
                chunks.append(chunk)
        return b"".join(chunks)


def parse_answer(decision: str, body: bytes) -> Mapping[str, Any]:
    """The `result` object of the backend's answer to a `decision` question.

    Raises:
        Forbidden, Unauthorized: the answer is an `error` with code 4101 or 4102.
        BackendUnavailable: anything else than the documented JSON.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _malformed(decision, "not JSON") from None
    if not isinstance(answer, dict):
        raise _malformed(decision, "not a JSON object")
    error = answer.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise _malformed(decision, '"error" is not an object')
        code = error.get("code")
        refusal = REFUSALS.get(code) if type(code) is int else None
        if refusal is None:
            raise _malformed(decision, f"unknown error code {code!r}"[:80])
        message = error.get("message")
        if isinstance(message, str):
            message = _reason(message)
        raise refusal(message or DEFAULT_REASON)
    result = answer.get("result")
    if not isinstance(result, dict):
        raise _malformed(decision, 'no "result" object and no "error"')
    return result


def admission_of(result: Mapping[str, Any]) -> Admission:
    """The connect answer's `result` as an `Admission`.

    Raises:
        BackendUnavailable: a field of another type than documented.
    """
    user = result.get("user")
    if user is not None and (not isinstance(user, str) or not user):
        raise _malformed("connect", '"user" must be a non-empty string or null')
    info = result.get("info")
    if info is None:
        info = {}
    elif not isinstance(info, dict):
        raise _malformed("connect", '"info" must be an object')
    channels = result.get("channels")
    if channels is None:
        channels = []
    elif not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise _malformed("connect", '"channels" must be a list of channel names')
    expires = result.get("expires")
    if expires is not None and (type(expires) not in (int, float)):
        raise _malformed("connect", '"expires" must be a number (seconds since the epoch)')
    return Admission(user, info, frozenset(channels), None if expires is None else float(expires))


def _reason(message: str) -> str:
    """`message` on one printable line, cut to `MAX_REASON` bytes of UTF-8 (whole
    characters)."""
    printable = "".join(c if c.isprintable() else " " for c in message).strip()
    return printable.encode()[:MAX_REASON].decode(errors="ignore")


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _malformed(decision: str, what: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"the app's backend's answer to the {decision} question is unusable: {what}"
    )


def _too_long(decision: str, limit: int) -> BackendUnavailable:
    return _malformed(decision, f"over {limit} bytes (proxy_max_answer)")
