"""A WebSocket over ASGI: the upgrade asked of the app, then one client's transport.

The ASGI server does the handshake's bytes, the framing, pings and the closing handshake;
this door asks the app (`Application.websocket`: the same checks, refusals and subprotocol
as on the native server), then moves whole messages. A refusal is the app's HTTP answer
where the server offers ASGI's `websocket.http.response` extension (uvicorn, hypercorn);
elsewhere (daphne) the server refuses with 403.

The hub frames a channel message once as a WebSocket frame for every WebSocket subscriber;
this transport takes the payloads back out of those frames (`unframe`) and sends them as
text or binary messages. Messages over `max_message` close the connection with 1009; a client
that lets `max_write_buffer` bytes pile up is closed with 4001.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..config import Config
from ..core.transport import Framing, Receiver
from ..errors import PushwireError
from ..guard import FAILURES
from ..transports.socket import await_opening
from ..transports.websocket.framing import ENVELOPE_FRAMING, RAW_FRAMING, unframe
from ..web import Application, Request, Response
from .outbox import Outbox, Outgoing
from .scope import Receive, Scope, Send, scope_request

__all__ = ["AsgiWebSocket", "serve_websocket"]


#: The last frames taken apart, and their messages: fan-out writes the same bytes object to
#: every subscriber in turn, so it is taken apart (and its text decoded) once, not each time.
_last: tuple[bytes, list[tuple[str, str | bytes]]] = (b"", [])


def _messages(frame: bytes) -> list[tuple[str, str | bytes]]:
    """The ASGI messages in `frame` (WebSocket frames as the hub wrote them): ("text", str)
    or ("bytes", bytes) each."""
    global _last
    last_frame, messages = _last
    if frame is last_frame:
        return messages
    messages = [
        ("text", payload.decode()) if is_text else ("bytes", payload)
        for is_text, payload in unframe(frame)
    ]
    _last = (frame, messages)
    return messages


class AsgiWebSocket(Outgoing):
    """The hub's `Transport` for a client on an accepted ASGI WebSocket."""

    name = "websocket"
    __slots__ = ("close_with", "config", "framing", "outbox", "receiver")

    def __init__(self, framing: Framing, config: Config) -> None:
        self.framing = framing
        self.config = config
        self.outbox = Outbox(config.max_write_buffer)
        self.receiver: Receiver | None = None
        #: Our close (code, reason), once asked for.
        self.close_with: tuple[int, str] | None = None

    def write(self, data: bytes) -> None:
        if self.outbox.ended or not data:
            return
        if not self.outbox.put(data):
            limit = self.config.max_write_buffer
            self.outbox.clear()
            asyncio.get_running_loop().call_soon(
                self.close, 4001, f"slow consumer (> {limit} bytes queued)"
            )

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with `code` once what is written is sent; the receiver hears it now."""
        if self.outbox.ended:
            return
        self.close_with = (code, reason)
        self.outbox.end()
        self._closed(code, reason, by_client=False)

    def lost(self, code: int, reason: str) -> None:
        """The client closed (or the connection broke: 1006)."""
        if self.outbox.ended and not self.outbox.lost and self.close_with is not None:
            return  # ours went first: the receiver heard it
        self.outbox.end(lost=True)
        self._closed(code, reason, by_client=code != 1006)

    def _closed(self, code: int, reason: str, *, by_client: bool) -> None:
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.closed(code, reason, by_client=by_client)

    async def send_all(self, send: Send) -> None:
        """Send each message written until the end; then our close, if it is ours. A client
        that does not take them within `close_timeout` after the close is left."""
        outbox = self.outbox
        while not outbox.ended:
            await self._send_frames(send, await outbox.take())
        if outbox.lost or self.close_with is None:
            return
        code, reason = self.close_with
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.close_timeout):
                await self._send_frames(send, await outbox.take())
                await send({"type": "websocket.close", "code": code, "reason": reason})

    @staticmethod
    async def _send_frames(send: Send, frames: list[bytes]) -> None:
        for frame in frames:
            for key, data in _messages(frame):
                await send({"type": "websocket.send", key: data})

    async def read_all(self, receive: Receive) -> None:
        """Hand each message to the receiver until the client closes or goes away."""
        limit = self.config.max_message
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                data = text if text is not None else message.get("bytes") or b""
                size = len(data)
                if isinstance(data, str) and size * 4 > limit:
                    size = len(data.encode())  # (at most 4 bytes a character: else under)
                if size > limit:
                    self.close(1009, f"message over size limit ({size} > {limit} bytes)")
                    return
                if self.receiver is not None:
                    self.receiver.receive(data)
            elif kind == "websocket.disconnect":
                code = message.get("code", 1005)
                self.lost(code, message.get("reason") or "")
                return


async def serve_websocket(
    app: Application,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    config: Config,
    connections: set[AsgiWebSocket],
) -> None:
    """An ASGI `websocket` scope: accepted as the app says, or refused with its answer."""
    if (await receive())["type"] != "websocket.connect":
        return
    request = scope_request(scope)
    try:
        accept = app.websocket(request)
    except PushwireError as exc:
        await _refuse(app, scope, send, request, exc)
        return
    except Exception as exc:  # the last resort (pushwire.guard)
        FAILURES.failed("websocket", exc, request.remote)
        await _refuse(app, scope, send, request, PushwireError("internal error"))
        return
    await send({"type": "websocket.accept", "subprotocol": accept.subprotocol})
    websocket = AsgiWebSocket(ENVELOPE_FRAMING if accept.envelope else RAW_FRAMING, config)
    connections.add(websocket)
    reader: asyncio.Future[None] | None = None
    try:
        receiver = websocket.receiver = accept.make_receiver(websocket)
        opening = receiver.open()
        if opening is not None:
            # Messages wait in the server until the connect handler let the client in.
            await await_opening(opening, websocket.close)
        if not websocket.outbox.ended:
            reader = asyncio.ensure_future(websocket.read_all(receive))
        await websocket.send_all(send)
    finally:
        connections.discard(websocket)
        if reader is not None:
            reader.cancel()
        websocket.lost(1006, "connection lost")  # when sending failed: the client is gone


async def _refuse(
    app: Application, scope: Scope, send: Send, request: Request, exc: PushwireError
) -> None:
    """Refuse the upgrade: the app's HTTP answer when the server can send one, else a
    close before accepting (the server answers 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        response: Response = app.error_response(request, exc)
        headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
        await send(
            {"type": "websocket.http.response.start", "status": response.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": str(exc)[:120]})
