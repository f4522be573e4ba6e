"""The core: sessions, channels, direct messages and presence, behind the `Hub` facade.

The core knows no I/O, no HTTP and no transport: it deals in sessions, channels and messages,
writes framed bytes to the `Transport`s it is handed (pushwire.core.transport), reaches other
processes only through its `Broker`, and reads the time only from its `Clock`. The servers and
the app's endpoints sit above it; nothing in it imports them.
"""

from .channels import MAX_BATCH_BYTES, HubStats
from .hub import Hub
from .identity import ConnectRequest, Identity
from .presence import snapshot_fields
from .sessions import (
    MemorySessionStore,
    Session,
    SessionMigration,
    SessionStore,
    new_session_id,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "ConnectRequest",
    "Hub",
    "HubStats",
    "Identity",
    "MemorySessionStore",
    "Session",
    "SessionMigration",
    "SessionStore",
    "new_session_id",
    "snapshot_fields",
]
