"""The `tcp` transport: a raw TCP port for native programs, sans-I/O.

A frame is a 4-byte big-endian length N, then N bytes: one kind byte and the payload.

| kind | payload |
|---|---|
| 1 | a pushwire.v1 envelope, UTF-8 JSON (text data in `"data"`) |
| 2 | a pushwire.v1 envelope with binary data: JSON header, byte 0x0A, the raw bytes |

The same envelopes as every other transport: `hello` first, then subscribe, publish, ack…
The server sends `{"type":"ping"}` after `ping_interval` without a byte from the client (as
on a WebSocket: the interval the welcome announces as `heartbeat`, so a client can take a
connection silent for longer for dead); the client answers `{"type":"pong"}` (or sends
anything) within `ping_timeout`. Closing is a `close` envelope, then
the server closes the socket.

A connection whose first byte is `<` is a Flash policy request: after
`<policy-file-request/>` and a NUL byte it gets the cross-domain policy (built from the Origin
allow-list) and a NUL byte, then the socket is closed. No frame can start with `<`: its length
would be over 1 GiB, far over any bound.

`TcpConnection` is a client on the port: the door hands it the socket once accepted; it
feeds `TcpParser`, hands envelopes to the client's `Receiver`, sends heartbeats (`{"type":
"ping"}`), drops a peer that stays silent for `ping_timeout` after one, and bounds an
unfinished frame's progress (`min_receive_rate` over each `receive_window`). It is the hub's
`Transport` for that client.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..clock import Clock
from ..config import Config
from ..core.transport import Framing, Receiver
from ..envelope import (
    TextFraming,
    direct_message_fields,
    encode_binary_frame_payload,
    encode_text,
)
from ..errors import BadRequest, IncompleteFrame, MessageTooLarge, RemoteError, backoff_seconds
from ..guard import FAILURES
from ..message import Data, Message
from ..origin import OriginPolicy
from .socket import SocketTransport

__all__ = [
    "POLICY_REQUEST",
    "TCP_FRAMING",
    "PolicyRequest",
    "TcpConnection",
    "TcpFrame",
    "TcpParser",
    "frame_tcp",
    "policy_file",
]

log = logging.getLogger("pushwire.tcp")

#: Room for the envelope around a message of `max_message` bytes.
ENVELOPE_ALLOWANCE: Final = 64 * 1024
TEXT: Final = 1
BINARY: Final = 2
POLICY_REQUEST: Final = b"<policy-file-request/>\x00"
_LENGTH: Final = struct.Struct("!I")


def frame_tcp(kind: int, payload: bytes) -> bytes:
    """One frame: length of (kind byte + payload), the kind byte, the payload."""
    return _LENGTH.pack(len(payload) + 1) + bytes((kind,)) + payload


class TcpFraming(TextFraming):
    """pushwire.v1 envelopes in TCP frames; binary data as kind-2 frames."""

    __slots__ = ()

    def wrap(self, payload: bytes) -> bytes:
        return frame_tcp(TEXT, payload)

    def frame_message(self, message: Message) -> bytes:
        if isinstance(message.data, bytes):
            fields: dict[str, Any] = {
                "type": "message",
                "channel": message.channel,
                "epoch": message.epoch,
                "offset": message.offset,
            }
            return frame_tcp(BINARY, encode_binary_frame_payload(fields, message.data))
        return super().frame_message(message)

    def frame_direct(self, data: Data, epoch: str | None = None, offset: int = 0) -> bytes:
        header = direct_message_fields(epoch, offset)
        if isinstance(data, bytes):
            return frame_tcp(BINARY, encode_binary_frame_payload(header, data))
        return self.wrap(encode_text(header, data))


TCP_FRAMING: Final = TcpFraming()


@dataclass(frozen=True, slots=True)
class TcpFrame:
    """A frame from the client: `data` is the envelope as str (kind 1) or bytes (kind 2)."""

    data: Data


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """The client asked for the Flash cross-domain policy."""


class TcpParser:
    """Bytes in, frames out. Bounds: frames over `max_frame` bytes are refused as soon as
    their length prefix arrives.

    Raises (from `receive_data`):
        MessageTooLarge: a length over `max_frame`.
        BadRequest: a zero length, an unknown kind, text that is not UTF-8, or a first byte
            of `<` not followed by the policy request.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._events: list[TcpFrame | PolicyRequest] = []
        self._first = True

    @property
    def incomplete(self) -> int:
        """Bytes of a frame started but not finished (0 between frames)."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._first and buffer:
            if buffer[:1] == b"<":
                size = len(POLICY_REQUEST)
                if buffer[:size] != POLICY_REQUEST[: len(buffer[:size])]:
                    raise BadRequest("a frame cannot start with '<': not a policy request")
                if len(buffer) >= size:
                    del buffer[:size]
                    self._events.append(PolicyRequest())
                return
            self._first = False
        while len(buffer) >= 4:
            (length,) = _LENGTH.unpack_from(buffer)
            if length == 0:
                raise BadRequest("frame length 0: a frame holds at least its kind byte")
            if length > self.max_frame:
                raise MessageTooLarge(f"frame over size limit ({length} > {self.max_frame} bytes)")
            if len(buffer) < 4 + length:
                return
            kind = buffer[4]
            payload = bytes(buffer[5 : 4 + length])
            del buffer[: 4 + length]
            if kind == TEXT:
                try:
                    self._events.append(TcpFrame(payload.decode()))
                except UnicodeDecodeError as exc:
                    raise BadRequest(f"text frame is not UTF-8 at byte {exc.start}") from None
            elif kind == BINARY:
                self._events.append(TcpFrame(payload))
            else:
                raise BadRequest(f"unknown frame kind {kind}: 1 (text) or 2 (binary)")

    def events_received(self) -> list[TcpFrame | PolicyRequest]:
        events, self._events = self._events, []
        return events


def policy_file(policy: OriginPolicy, port: int) -> bytes:
    """The Flash cross-domain policy for this port, NUL-terminated.

    Domains: the loopback hosts, and the hosts of the allowed origins ("*" allows all).
    """
    domains = policy.flash_domains()
    lines = [
        '<?xml version="1.0"?>',
        '<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">',
        "<cross-domain-policy>",
        '<site-control permitted-cross-domain-policies="master-only"/>',
        *(f'<allow-access-from domain="{domain}" to-ports="{port}"/>' for domain in domains),
        "</cross-domain-policy>",
    ]
    return "\n".join(lines).encode() + b"\x00"


class TcpConnection(SocketTransport):
    """A native client on the TCP port (see the module docstring)."""

    name = "tcp"
    framing: Framing = TCP_FRAMING
    __slots__ = (
        "awaiting_reply",
        "clock",
        "closed",
        "config",
        "on_lost",
        "parser",
        "policy",
        "progress_mark",
        "received",
        "remote",
    )
    clock: Clock
    config: Config
    on_lost: Callable[[SocketTransport], object]

    def __init__(
        self,
        socket: asyncio.Transport,
        *,
        config: Config,
        clock: Clock,
        policy_file: bytes,
        on_lost: Callable[[SocketTransport], object],
        remote: str | None = None,
    ) -> None:
        self._init_socket(socket)
        self.clock = clock
        self.config = config
        self.on_lost = on_lost
        self.remote = remote
        self.policy = policy_file
        self.parser = TcpParser(config.max_message + ENVELOPE_ALLOWANCE)
        self.awaiting_reply = False
        self.closed = False
        self.received = 0  # bytes received (an unfinished frame's progress is counted here)
        self.progress_mark = -1  # `received` when the current receive window began; -1: none

    def start(self, receiver: Receiver) -> None:
        """The door accepted the connection: `receiver` takes the client's envelopes."""
        self.receiver = receiver
        self.socket.set_write_buffer_limits(high=self.config.max_write_buffer)
        self._heartbeat_later()

    # -- asyncio.Protocol (after the door's set_protocol) -----------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.awaiting_reply = False
        self.received += len(data)
        refusal: RemoteError | None = None
        try:
            try:
                self.parser.receive_data(data)
            except RemoteError as exc:
                refusal = exc  # the frames that ended before the bad one are taken first
            for event in self.parser.events_received():
                if isinstance(event, PolicyRequest):
                    self.socket.write(self.policy)
                    self._end()
                    return
                if self.receiver is not None:
                    self.receiver.receive(event.data)
        except Exception as exc:  # the last resort (pushwire.guard)
            self._failed(exc)
            return
        if refusal is not None:
            if not self.closed:
                self._refuse(refusal)
            return
        if not self.parser.incomplete:
            self.progress_mark = -1
            self._heartbeat_later()
        elif self.progress_mark < 0:
            # A frame began and did not end: bound its progress (`min_receive_rate`).
            self.progress_mark = self.received
            self._set_timer(self.config.receive_window, self._frame_progress)

    def _failed(self, exc: Exception) -> None:
        """Something raised that nobody expected: log it (rate-limited), close with 1011."""
        FAILURES.failed("tcp", exc, self.remote)
        self.close(1011, "internal error")

    def _incomplete(self) -> int:
        return self.parser.incomplete

    def _gone(self) -> None:
        self.closed = True

    # -- Transport contract -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and data:
            self.socket.write(data)

    def close(self, code: int, reason: str) -> None:
        """Send a `close` envelope, then close the socket; the session stays resumable."""
        if self.closed:
            return
        self.write(TCP_FRAMING.frame_control({"type": "close", "code": code, "reason": reason}))
        self._end()
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.closed(code, reason, by_client=False)

    # -- internals ----------------------------------------------------------------------------

    def _end(self) -> None:
        # close() waits for the buffer to flush: a peer that does not read it within
        # `close_timeout` (a slow consumer) is dropped, so its buffer is freed.
        self.closed = True
        self.socket.close()
        self._set_timer(self.config.close_timeout, self.abort)

    def _refuse(self, exc: RemoteError) -> None:
        error: dict[str, object] = {"type": "error", "code": exc.error_code, "message": str(exc)}
        wait = backoff_seconds(exc)
        if wait is not None:
            error["retry_after"] = wait
        self.socket.write(TCP_FRAMING.wrap(encode_text(error)))
        self.close(exc.close_code, str(exc)[:120])

    def _frame_progress(self) -> None:
        """A receive window passed while a frame was unfinished."""
        if self.closed:
            return
        config, held = self.config, self.parser.incomplete
        if not held:
            self.progress_mark = -1
            self._heartbeat_later()
            return
        got = self.received - self.progress_mark
        if got < config.min_receive_rate * config.receive_window:
            window = config.receive_window
            then = (
                f"nothing for {window} s"
                if not got
                else f"{got} bytes in {window} s (under {config.min_receive_rate} bytes/s)"
            )
            self._refuse(IncompleteFrame(f"incomplete frame: {held} bytes, then {then}"))
            return
        self.progress_mark = self.received
        self._set_timer(config.receive_window, self._frame_progress)

    def _heartbeat_later(self) -> None:
        # `ping_interval`, the welcome's `heartbeat`: what the client's liveness check counts on.
        self._set_timer(self.config.ping_interval, self._heartbeat)

    def _heartbeat(self) -> None:
        if self.closed:
            return
        if self.awaiting_reply:
            log.debug("tcp peer silent after a ping, dropping it")
            self.socket.abort()
            return
        self.awaiting_reply = True
        self.write(TCP_FRAMING.frame_control({"type": "ping"}))
        self._set_timer(self.config.ping_timeout, self._heartbeat)
