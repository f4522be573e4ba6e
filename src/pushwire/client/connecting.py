"""`connect()`: a `Client` made with the same arguments, to await or use with `async with`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

__all__ = ["connecting"]


class Openable(Protocol):
    """What `connect()` opens and closes: the `C`."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


P = ParamSpec("P")
C = TypeVar("C", bound=Openable)


class _Connecting(Generic[C]):
    """What `connect()` returns: await it, or use it with `async with`."""

    def __init__(self, client: C) -> None:
        self.client = client

    def __await__(self) -> Generator[Any, None, C]:
        return self._open().__await__()

    async def _open(self) -> C:
        await self.client.open()
        return self.client

    async def __aenter__(self) -> C:
        return await self._open()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.close()


def connecting(make: Callable[P, C]) -> Callable[P, _Connecting[C]]:
    """`connect` takes what `Client` takes: one signature to keep, not two."""

    def connect(*args: P.args, **kwargs: P.kwargs) -> _Connecting[C]:
        """Connect to a pushwire server: `client = await connect(url, ...)`, or
        `async with connect(url, ...) as client:` (which closes it at the end). The
        arguments are `Client`'s, documented there.

        Raises (when awaited):
            ClientClosed: no transport could connect, or the server refused the connection.
            ValueError: an unknown transport name, or one the URL's scheme cannot carry.
        """
        return _Connecting(make(*args, **kwargs))

    # For help() and inspect.signature(): Client's parameters, connect's result.
    signature = inspect.signature(make).replace(return_annotation="_Connecting")
    connect.__signature__ = signature  # type: ignore[attr-defined]
    return connect
