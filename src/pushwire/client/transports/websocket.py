"""The client's WebSocket transport: pushwire.v1 JSON text frames, binary data in binary
frames (header line, newline, data), over the websockets library."""

from __future__ import annotations

import json
import ssl

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ...envelope import SUBPROTOCOL
from ..errors import ConnectionLost
from .base import MAX_FRAME, ClientTransport, Envelope, Item, decode_text, encode_json
from .http import refusal

__all__ = ["WebSocketTransport"]


class WebSocketTransport(ClientTransport):
    """pushwire.v1 over WebSocket: JSON text frames, binary data in binary frames."""

    name = "websocket"

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self.url = url
        self.ssl_context = ssl_context
        self.ws: ClientConnection | None = None

    async def open(self, hello: Envelope, timeout: float) -> None:
        try:
            self.ws = await ws_connect(
                self.url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                max_size=MAX_FRAME,
                open_timeout=timeout,
                ssl=self.ssl_context,
            )
        except InvalidStatus as exc:  # refused: a 429 or 503 may say how long to back off
            response = exc.response
            raise refusal(
                "websocket", response.status_code, response.headers.get("Retry-After")
            ) from exc
        except (TimeoutError, OSError, InvalidHandshake) as exc:
            raise ConnectionLost(1006, f"websocket: {exc}") from exc
        if self.ws.subprotocol != SUBPROTOCOL:
            await self.ws.close()
            raise ConnectionLost(1006, f"the server did not accept {SUBPROTOCOL}")
        await self.send([(hello, None)])

    async def send(self, items: list[Item]) -> None:
        ws = self.ws
        if ws is None:
            raise ConnectionLost(1006, "not connected")
        try:
            for envelope, data in items:
                if data is None:
                    await ws.send(json.dumps(envelope, separators=(",", ":")))
                else:
                    await ws.send(encode_json(envelope) + b"\n" + data)
        except ConnectionClosed as exc:
            raise _lost(exc) from None

    async def receive(self) -> Item:
        ws = self.ws
        if ws is None:
            raise ConnectionLost(1006, "not connected")
        try:
            frame = await ws.recv()
        except ConnectionClosed as exc:
            raise _lost(exc) from None
        if isinstance(frame, str):
            item = decode_text(frame.encode())
        else:
            header, newline, data = frame.partition(b"\n")
            if not newline:
                raise ConnectionLost(4100, "binary envelope without its newline")
            item = (decode_text(header)[0], data)
        self._learn(item[0])
        return item

    async def close(self, code: int = 1000) -> None:
        if self.ws is not None:
            await self.ws.close(code)


def _lost(exc: ConnectionClosed) -> ConnectionLost:
    close = exc.rcvd or exc.sent
    return ConnectionLost(close.code if close else 1006, close.reason if close else "")
