"""How many connections the process can hold: its open-file limit, raised at start.

Each connection is one file descriptor. `serve` raises the soft `RLIMIT_NOFILE` to the hard
limit (what an unprivileged process may do), and `max_connections` of 0 (the default) becomes
that limit minus `fd_reserve`, the descriptors kept for everything else (listening sockets,
Redis, the auth proxy's connections, logs).
"""

from __future__ import annotations

import logging
import resource
from typing import Final

__all__ = ["connection_bound", "raise_file_limit"]

log = logging.getLogger("pushwire.server")

#: Where the soft limit stops when the hard one is unlimited (Linux refuses more than its
#: `nr_open`, 1,048,576 by default).
UNLIMITED_CAP: Final = 1 << 20


def raise_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, want, exc)
    return UNLIMITED_CAP if soft == resource.RLIM_INFINITY else soft


def connection_bound(max_connections: int, fd_reserve: int) -> int:
    """`max_connections` if set (> 0), else the soft open-file limit minus `fd_reserve`
    (at least 1)."""
    if max_connections > 0:
        return max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = UNLIMITED_CAP
    return max(1, soft - fd_reserve)
