"""The `sse` transport: `text/event-stream` (the standard form of HTTP streaming).

Two framings:

- envelope (pushwire.js): each pushwire.v1 envelope is one event, `data: <json>`;
- raw (`/sse/<channel>`, a plain `EventSource` with no library): each channel message is one
  event whose `data` is the message text, with `id: <epoch>:<offset>` so the browser's
  automatic reconnection sends `Last-Event-ID` and resumes where it stopped. A binary message
  is an event of type `binary` whose data is base64.

Heartbeats are SSE comments (`: hb`), which EventSource ignores. The stream starts with
`retry:` (the reconnection delay a browser waits). Frames are SSE events; a door that speaks
HTTP/1.1 puts each in a chunk.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from typing import Any, Final

import orjson

from ..core import Hub, Identity, Session
from ..core.transport import Transport
from ..endpoint import ClientInfo, Endpoint, RawHandler, raw_connect_request
from ..envelope import TextFraming
from ..errors import BadRequest, MethodNotAllowed
from ..message import Data, Message, Position
from ..parsing import decimal, quoted
from ..web import Request, StreamResponse
from .http_session import NO_BUFFERING, StreamWire, client_info

__all__ = [
    "RAW_SSE_FRAMING",
    "SSE_FRAMING",
    "SSE_HEARTBEAT",
    "SSE_STREAM",
    "parse_last_event_id",
    "raw_sse_stream",
]

CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
#: Reconnection delay a browser's EventSource is told (milliseconds).
SSE_RETRY_MS: Final = 2000
RETRY: Final = b"retry: %d\n\n" % SSE_RETRY_MS


class SseFraming(TextFraming):
    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        # orjson never emits a raw newline, so one data line holds the whole envelope.
        return b"data: " + payload + b"\n\n"


def _event(data: Data, event_id: str | None) -> bytes:
    lines = [] if event_id is None else [b"id: " + event_id.encode()]
    if isinstance(data, bytes):
        lines.append(b"event: binary")
        lines.append(b"data: " + base64.b64encode(data))
    else:
        # A data line ends at CR, LF or CRLF; each line of the text becomes one data line.
        text = data.replace("\r\n", "\n").replace("\r", "\n")
        lines.extend(b"data: " + line.encode() for line in text.split("\n"))
    return b"\n".join(lines) + b"\n\n"


class RawSseFraming:
    """Raw mode: message data as event data, the channel position as the event id."""

    __slots__ = ()

    def frame_message(self, message: Message) -> bytes:
        return _event(message.data, f"{message.epoch}:{message.offset}")

    def frame_direct(self, data: Data, epoch: str | None = None, offset: int = 0) -> bytes:
        return _event(data, None)

    def frame_control(self, fields: dict[str, Any]) -> bytes:
        if fields.get("type") != "gap":
            return b""
        # History no longer reaches back to Last-Event-ID: an event of type "gap" says so.
        return b"event: gap\ndata: " + orjson.dumps(fields) + b"\n\n"


def parse_last_event_id(value: str | None) -> tuple[str, int] | None:
    """`epoch:offset` from a `Last-Event-ID` header (or `?lastEventId=`), None when absent.

    Raises:
        BadRequest: no `epoch:` before the offset, or an offset that is not a number
            (`parsing.decimal`).
    """
    if not value:
        return None
    epoch, _, offset = value.strip().rpartition(":")
    if not epoch:
        raise BadRequest(f"invalid Last-Event-ID {quoted(value)}: epoch:offset")
    return epoch, decimal(offset, "Last-Event-ID offset")


SSE_FRAMING: Final = SseFraming()
RAW_SSE_FRAMING: Final = RawSseFraming()
SSE_HEARTBEAT: Final = b": hb\n\n"
#: `GET E/sse?hello=…`: a pushwire.v1 session, an envelope an event.
SSE_STREAM: Final = StreamWire("sse", CONTENT_TYPE, SSE_FRAMING, SSE_HEARTBEAT, RETRY)


def raw_sse_stream(
    hub: Hub, request: Request, endpoint: Endpoint, cors: list[tuple[str, str]]
) -> StreamResponse | Awaitable[StreamResponse]:
    """`GET /sse/<channel>`: a plain EventSource joins the channel; `Last-Event-ID` (or
    `?lastEventId=`) resumes after that position. Where connecting or reading the channel
    needs a check that can refuse (authentication, an app handler), the answer waits for it,
    so a refused client gets its status (401, 403) instead of a stream.

    Raises:
        MethodNotAllowed: not GET or HEAD.
        BadRequest: not HTTP/1.1.
    """
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{request.path} takes GET, not {request.method}")
    if request.version != "1.1":
        raise BadRequest("SSE needs HTTP/1.1 (chunked)")
    last = parse_last_event_id(
        request.header("last-event-id") or request.query_param("lastEventId")
    )
    client = client_info(request, request.path)
    access = hub.access
    if access.connect_hooked or access.subscribe_hooked:
        return _checked(hub, endpoint, cors, client, last)
    if not access.authenticating:
        return _stream(hub, endpoint, cors, client, last, None)
    identity = access.connect_now(raw_connect_request(client, "sse"))
    _check(hub, endpoint, identity)
    return _stream(hub, endpoint, cors, client, last, identity)


async def _checked(
    hub: Hub,
    endpoint: Endpoint,
    cors: list[tuple[str, str]],
    client: ClientInfo,
    last: tuple[str, int] | None,
) -> StreamResponse:
    """Connect and check the channel first (on a session that is not opened yet)."""
    access, channel = hub.access, endpoint.channel
    assert channel is not None
    identity = await access.connect(raw_connect_request(client, "sse"))
    candidate = _check(hub, endpoint, identity)
    await access.subscribe_hooks(candidate, channel)
    return _stream(hub, endpoint, cors, client, last, identity)


def _check(hub: Hub, endpoint: Endpoint, identity: Identity) -> Session:
    """Check the channel's rule for `identity`, on a session that is not opened yet."""
    channel = endpoint.channel
    assert channel is not None
    candidate = Session(None, identity.user, identity.info)
    candidate.grants = identity.grants
    candidate.forwarded = identity.forwarded
    hub.access.check_subscribe(candidate, channel)
    return candidate


def _stream(
    hub: Hub,
    endpoint: Endpoint,
    cors: list[tuple[str, str]],
    client: ClientInfo,
    last: tuple[str, int] | None,
    identity: Identity | None,
) -> StreamResponse:
    def make_receiver(transport: Transport) -> RawHandler:
        handler = RawHandler(hub, endpoint, transport, client, identity=identity)
        if last is not None:
            handler.since = Position(*last)
        return handler

    return StreamResponse(
        kind="sse",
        headers=[("Content-Type", CONTENT_TYPE), *NO_BUFFERING, *cors],
        framing=RAW_SSE_FRAMING,
        heartbeat=SSE_HEARTBEAT,
        make_receiver=make_receiver,
        first=RETRY,
    )
