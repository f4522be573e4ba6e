"""A blocking client for scripts, notebooks and threaded programs (a Django management command,
a WSGI view, a Jupyter cell): the asyncio `Client` run on an event loop of its own, in a
thread of its own, behind plain methods.

```python
from pushwire.client import sync

with sync.connect("http://localhost:8000/pushwire", user="bot") as client:
    client.subscribe("room", rewind=10)
    client.publish("room", "hello")
    for message in client.messages(timeout=5):  # ends after 5 s without one
        print(message.data)
```

It works from any thread, with or without an event loop of the caller's own (a notebook's
included): each call hands a coroutine to the client's loop and waits for its result. The
guarantees, retries and errors are the asyncio client's (client.py). A call that times out,
or is interrupted (Ctrl-C), is cancelled on the loop; cancelling `recv()` loses no message.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from .client import Client
from .errors import ClientClosed, Failure, Gap, Message, Presence, Subscription

__all__ = ["SyncClient", "connect"]

P = ParamSpec("P")
T = TypeVar("T")


class SyncClient:
    """The blocking face of a `Client` (`connect()` makes one, connected). Every method may
    be called from any thread; none may be called from the client's own loop (a callback
    such as `on_error` runs there)."""

    def __init__(self, make: Callable[[], Client]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pushwire-client", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def create() -> Client:
            return make()  # on the loop: its futures and tasks belong to it

        try:
            self._client = self._call(create(), None)
        except BaseException:
            self._stop()
            raise

    @property
    def client(self) -> Client:
        """The asyncio client underneath (to be used on its loop only)."""
        return self._client

    @property
    def transport(self) -> str:
        """The transport of the current connection."""
        return self._client.transport

    @property
    def session(self) -> str | None:
        """The session id, once welcomed."""
        return self._client.session

    def open(self, timeout: float | None = None) -> None:
        """Connect (`connect()` did). Raises `ClientClosed` when no transport works."""
        self._call(self._client.open(), timeout)

    def subscribe(
        self, channel: str, presence: bool = False, rewind: int = 0, timeout: float | None = None
    ) -> Subscription:
        """`Client.subscribe`: join `channel`, its last `rewind` messages first."""
        return self._call(self._client.subscribe(channel, presence, rewind), timeout)

    def unsubscribe(self, channel: str, timeout: float | None = None) -> None:
        """`Client.unsubscribe`."""
        self._call(self._client.unsubscribe(channel), timeout)

    def publish(
        self,
        channel: str,
        data: str | bytes,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> tuple[str, int]:
        """`Client.publish`: the message's (epoch, offset) once the server stored it."""
        publish = self._client.publish(channel, data, idempotency_key=idempotency_key)
        return self._call(publish, timeout)

    def send(self, data: str | bytes, timeout: float | None = None) -> None:
        """`Client.send`: a message to the endpoint (echoed on /echo, to the app on
        /pushwire)."""
        self._call(self._client.send(data), timeout)

    def fetch_presence(self, channel: str, timeout: float | None = None) -> Presence:
        """`Client.fetch_presence`: who is in `channel` now."""
        return self._call(self._client.fetch_presence(channel), timeout)

    def presence(self, channel: str) -> Presence | None:
        """The latest members of `channel` (subscribed with `presence=True`), kept up to
        date by the client; None before the first snapshot."""

        async def latest() -> Presence | None:
            return self._client.presence.get(channel)

        return self._call(latest(), None)

    def recv(self, timeout: float | None = None) -> Message | Gap | Failure:
        """The next message (or `Gap`, or `Failure`), as `Client.recv`.

        Raises:
            TimeoutError: none arrived within `timeout` seconds (None: wait for one).
            ClientClosed: the client is closed and everything received was read.
        """
        return self._call(self._client.recv(), timeout)

    def messages(self, timeout: float | None = None) -> Iterator[Message | Gap | Failure]:
        """The messages as they come; the iteration ends when none arrived for `timeout`
        seconds (None: never), or when the client is closed and everything was read."""
        while True:
            try:
                yield self.recv(timeout)
            except (TimeoutError, ClientClosed):
                return

    def __iter__(self) -> Iterator[Message | Gap | Failure]:
        """`for message in client`: every message until the client is closed."""
        return self.messages()

    def close(self) -> None:
        """End the session and the connection, and the client's thread; from then on every
        call raises `ClientClosed` and iterating ends. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._client.close(), None, closing=True)
        finally:
            self._stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(
        self, coroutine: Coroutine[Any, Any, T], timeout: float | None, closing: bool = False
    ) -> T:
        """Run `coroutine` on the client's loop and wait for its result (`timeout`: then
        cancel it and raise TimeoutError). Raises ClientClosed after `close()`."""
        if self._closed and not closing:
            coroutine.close()
            raise ClientClosed(1000, "the client is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a SyncClient method was called on its own loop: it would block")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            if future.done():
                raise  # the coroutine's own TimeoutError
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None
        except BaseException:
            future.cancel()  # interrupted (Ctrl-C): the call does not go on behind our back
            raise

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _blocking(make: Callable[P, Client]) -> Callable[P, SyncClient]:
    """`connect` takes what `Client` takes."""

    def connect(*args: P.args, **kwargs: P.kwargs) -> SyncClient:
        """Connect to a pushwire server and return a blocking client: use it with `with`
        (which closes it), or call `close()`. The arguments are `Client`'s.

        Raises:
            ClientClosed: no transport could connect, or the server refused the connection.
            ValueError: an unknown transport name, or one the URL's scheme cannot carry.
        """
        client = SyncClient(lambda: make(*args, **kwargs))
        try:
            client.open()
        except BaseException:
            client.close()
            raise
        return client

    return connect


connect = _blocking(Client)
