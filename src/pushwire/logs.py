"""Logging: the process's set-up (`--log-level`, `--log-format text|json`), the connection
lifecycle lines and the HTTP access log.

- `setup` configures the root logger of a process: the main one and each worker (`--workers`
  spawns processes, which start with logging unconfigured).
- `json` format: one JSON object per line, `{"time", "level", "logger", "pid", "message"}` plus
  the record's structured fields (`FIELDS`), e.g. a connection's `event`, `transport`, `code`.
- Connection lifecycle (logger `pushwire.connection`, info): `open` when a client's session
  opens on a connection, `close` when that connection ends, with the transport, the peer's
  address, the user, the session's public id, the close code and reason, and how long it
  lasted. Never a token, a session id or secret (credentials), or a query string.
- Access log (logger `pushwire.access`, info, `Config.access_log`): one line per HTTP answer:
  method, path, query parameter names with every value masked, status, bytes, peer.

`websockets`' own logger says `connection closed` at info for every WebSocket: it is held at
warning unless the level is debug (the lifecycle line says more).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Final

import orjson

__all__ = [
    "FIELDS",
    "LEVELS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "access",
    "connection_event",
    "masked_query",
    "setup",
]

#: The record attribute that holds a line's structured fields (a dict).
FIELDS: Final = "pushwire_fields"
LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

connection_log = logging.getLogger("pushwire.connection")
access_log = logging.getLogger("pushwire.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, Mapping):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup(level: str = "info", log_format: str = "text") -> None:
    """Configure this process's root logger: `level` (debug, info, warning, error) and
    `log_format` (text or json), on stderr. Replaces handlers set before (a worker's, or
    `basicConfig`'s).

    Raises:
        ValueError: an unknown level or format.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"log level is one of {', '.join(LEVELS)}, not {level!r}")
    if log_format not in FORMATS:
        raise ValueError(f"log format is one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    quiet = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    logging.getLogger("websockets").setLevel(quiet)


def connection_event(
    event: str,
    *,
    transport: str,
    peer: str | None,
    user: str | None,
    session: str | None,
    code: int | None = None,
    reason: str | None = None,
    duration: float | None = None,
) -> None:
    """Log a connection's `open` or `close` (see the module docstring); the caller checks
    `connection_log.isEnabledFor(logging.INFO)` first."""
    fields: dict[str, object] = {
        "event": event,
        "transport": transport,
        "peer": peer,
        "user": user,
        "session": session,
    }
    text = f"{event} {transport} from {peer or '?'} user={user or '-'} session={session}"
    if code is not None:
        fields["code"] = code
        fields["reason"] = reason
        text += f" code={code}"
        if reason:
            text += f" reason={reason!r}"
    if duration is not None:
        fields["duration"] = round(duration, 3)
        text += f" after {duration:.1f} s"
    connection_log.info("connection %s", text, extra={FIELDS: fields})


def masked_query(query: str) -> str:
    """The query's parameter names, every value replaced by `***` (a value may be a token or
    a session secret)."""
    if not query:
        return ""
    names = [part.partition("=")[0] for part in query.split("&") if part]
    return "&".join(f"{name[:40]}=***" for name in names[:20])


def access(
    method: str, path: str, query: str, status: int, size: int | None, peer: str | None
) -> None:
    """Log one HTTP answer (see the module docstring); the caller checks that the access
    log is on."""
    shown_query = masked_query(query)
    target = path[:200] + (f"?{shown_query}" if shown_query else "")
    fields = {
        "event": "http",
        "method": method,
        "path": path[:200],
        "query": shown_query,
        "status": status,
        "bytes": size,
        "peer": peer,
    }
    access_log.info(
        '%s "%s %s" %d %s',
        peer or "?",
        method,
        target,
        status,
        "-" if size is None else size,
        extra={FIELDS: fields},
    )
