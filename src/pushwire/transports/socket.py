"""A client connection that a door handed its socket to: the WebSocket after its upgrade,
a client of the raw TCP port. What both do with the socket's events is here.

The door installs the object on the socket (`set_protocol`), so its method names are those of
an `asyncio.Protocol`; it is also the hub's `Transport` for the client, and tells the door
once when the connection is gone (`on_lost`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..clock import OneTimer
from ..config import Config
from ..core.transport import Receiver
from ..errors import PushwireError
from ..guard import FAILURES

__all__ = ["SocketTransport", "await_opening"]


class SocketTransport(OneTimer, asyncio.Protocol):
    """The part every handed-over connection shares (see the module docstring)."""

    # The clock, config and `on_lost` are the subclass's: slots, or read from an object that
    # every connection of a server shares (three slots fewer a connection).
    __slots__ = ("closing", "receiver", "socket")
    receiver: Receiver | None

    @property
    def config(self) -> Config:
        """The server's configuration."""
        raise NotImplementedError

    @property
    def on_lost(self) -> Callable[[SocketTransport], object]:
        """Called once when the connection is gone (the door's bookkeeping)."""
        raise NotImplementedError

    def _init_socket(self, socket: asyncio.Transport) -> None:
        """Set up what this class keeps (the subclasses' __init__ calls this first)."""
        self._init_timer()
        self.socket = socket
        self.receiver = None
        #: The code and reason of the close the server began (None: none yet): what ended the
        #: session when the peer never answers it (a slow consumer's 4001), rather than 1006.
        self.closing: tuple[int, str] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._gone()
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            code, reason = self.closing or (1006, "connection lost")
            receiver.closed(code, reason, by_client=False)
        self.on_lost(self)

    def _gone(self) -> None:
        """The socket is gone: what the subclass must drop before the receiver hears it."""

    def pause_writing(self) -> None:
        # The socket's buffer passed max_write_buffer: this client does not read fast enough.
        asyncio.get_running_loop().call_soon(
            self.close, 4001, f"slow consumer (> {self.config.max_write_buffer} bytes queued)"
        )

    def resume_writing(self) -> None:
        pass

    def buffered(self) -> int:
        """Bytes held for this client: the socket's write buffer and an unfinished frame
        (the memory budget, pushwire.core.budget)."""
        return self.socket.get_write_buffer_size() + self._incomplete()

    def _incomplete(self) -> int:
        """Bytes of an unfinished incoming frame or message held."""
        return 0

    def shed(self, reason: str) -> None:
        """Closed for the memory budget: a slow consumer (4001)."""
        self.close(4001, reason)

    def eof_received(self) -> bool | None:
        return None  # let asyncio close the socket

    def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection now."""
        self.socket.abort()

    def shutdown(self) -> None:
        """Server shutdown: close with 1001 (the client reconnects elsewhere or later)."""
        self.close(1001, "server shutting down")


async def await_opening(opening: Awaitable[None], close: Callable[[int, str], object]) -> None:
    """Run a receiver's opening (its connect handler): a refusal closes the connection with
    the refusal's close code, an unexpected failure with 1011 (logged, details kept)."""
    try:
        await opening
    except PushwireError as exc:
        close(exc.close_code, str(exc)[:120])
    except Exception as exc:
        FAILURES.failed("opening", exc, None)
        close(1011, "internal error")
