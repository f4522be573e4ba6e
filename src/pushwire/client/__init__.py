"""The asyncio Python client: `connect(url)` over WebSocket, SSE, streaming, long-poll,
polling or TCP, with the same operations on each (docs/protocol.md is the wire); and
`sync.connect(url)`, the same client behind blocking calls, for scripts and notebooks."""

from . import sync
from .client import Client, connect
from .errors import (
    ClientClosed,
    ClientError,
    Failure,
    Gap,
    Join,
    Leave,
    Member,
    Message,
    Presence,
    RequestFailed,
    Subscription,
)
from .presence import PresenceEvents
from .retry import RetryPolicy
from .transports import TRANSPORTS

__all__ = [
    "TRANSPORTS",
    "Client",
    "ClientClosed",
    "ClientError",
    "Failure",
    "Gap",
    "Join",
    "Leave",
    "Member",
    "Message",
    "Presence",
    "PresenceEvents",
    "RequestFailed",
    "RetryPolicy",
    "Subscription",
    "connect",
    "sync",
]
