"""What `Access` (pushwire.core.identity) asks the app's backend, as a contract: `Proxy`, and
`Admitted`, its answer about a connecting client. The HTTP client that implements it lives in
`pushwire.auth.proxy`; the core does no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..message import Data

__all__ = ["Admitted", "Proxy"]


class Admitted(Protocol):
    """What the connect proxy says of a client it lets in (`pushwire.auth.proxy.Admission`)."""

    @property
    def user(self) -> str | None: ...
    @property
    def info(self) -> Mapping[str, Any]: ...
    @property
    def channels(self) -> frozenset[str]: ...
    @property
    def expires(self) -> float | None: ...


class Proxy(Protocol):
    """What `Access` asks the app's backend: who connects (when `connects`), may a session
    read a channel (`subscribes`), publish to it (`publishes`); `forwarded` picks the request
    headers passed on. `pushwire.auth.proxy.BackendProxy` asks over HTTP. A question raises
    `Forbidden` or `Unauthorized` when the backend refuses, `BackendUnavailable` when it
    gives no usable answer."""

    @property
    def connects(self) -> bool: ...
    @property
    def subscribes(self) -> bool: ...
    @property
    def publishes(self) -> bool: ...
    def forwarded(self, headers: Sequence[tuple[str, str]]) -> Mapping[str, str]: ...
    async def connect(
        self,
        *,
        transport: str,
        path: str,
        remote: str | None,
        user: str | None,
        token: str | None,
        headers: Mapping[str, str],
    ) -> Admitted: ...
    async def subscribe(
        self, *, user: str | None, channel: str, info: Mapping[str, Any], headers: Mapping[str, str]
    ) -> None: ...
    async def publish(self, *, user: str | None, channel: str, data: Data) -> None: ...
    async def close(self) -> None: ...
