"""The configuration file (`pushwire serve --config pushwire.toml`): every setting, and who
may do what.

```toml
[server]                     # any field of pushwire.config.Config (docs/operations.md)
port = 8000
broker = "redis://127.0.0.1:6379/0"
max_message = 65536
allow_origins = ["https://app.example"]

[auth]
jwt_secret = "…"             # or jwt_public_key_file / jwks_file; better: PUSHWIRE_JWT_SECRET
jwt_audience = "chat"        # optional: the aud a token must name
jwt_issuer = "https://…"     # optional: the iss a token must have
anonymous = false            # let connections without a token in, as no user
api_key = "…"                # the HTTP API's key; better: PUSHWIRE_API_KEY

[namespaces.chat]            # channels chat:<anything>
subscribe = "authenticated"  # anyone | authenticated | token | handler
publish = "members"          # nobody | members | authenticated | anyone
presence = true
history_size = 100           # messages kept per channel (default: the server's history_size)
history_ttl = 3600           # seconds each is kept (default: the server's history_ttl)

[namespaces.dm]
users_in_name = true         # dm:alice,bob: alice and bob only
```

Secrets are better given in the environment (`PUSHWIRE_JWT_SECRET`, `PUSHWIRE_API_KEY`) than
in a file or on the command line, where other users of the machine may read them. A flag
wins over the environment, which wins over the file (`pushwire.options`: one schema for the
three, derived from `Config`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .auth.namespaces import Namespace, parse_namespaces
from .options import Source, from_environment, from_table

__all__ = ["AUTH_SETTINGS", "ENVIRONMENT", "Settings", "load"]

#: The `[auth]` keys and their types; each is a `Config` field of the same name.
AUTH_SETTINGS: Final[Mapping[str, type]] = {
    "jwt_secret": str,
    "jwt_public_key_file": str,
    "jwks_file": str,
    "jwt_audience": str,
    "jwt_issuer": str,
    "anonymous": bool,
    "api_key": str,
}
#: Settings read from the environment, by variable (each `Config` field is one:
#: `pushwire.options`; these two are the ones the docs have long named).
ENVIRONMENT: Final[Mapping[str, str]] = {
    "PUSHWIRE_JWT_SECRET": "jwt_secret",
    "PUSHWIRE_API_KEY": "api_key",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What a configuration file and the environment set: `Config` fields and namespaces."""

    fields: Mapping[str, Any]
    namespaces: tuple[Namespace, ...] | None
    #: Where each of `fields` came from (the environment wins over the file).
    sources: Mapping[str, Source] = dataclasses.field(default_factory=dict)


def load(path: str | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings of the file at `path` (None: no file), then of the environment.

    Raises:
        ValueError: the file cannot be read, is not TOML, or has an unknown section, key or
            value, or a variable has a value of the wrong type (one line that says which).
    """
    fields: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    namespaces = None
    if path is not None:
        try:
            document = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
        unknown = set(document) - {"server", "auth", "namespaces"}
        if unknown:
            raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
        fields.update(from_table(document.get("server", {}), f"{path}: [server]"))
        auth = _auth(document.get("auth", {}), path)
        twice = set(auth) & set(fields)
        if twice:
            raise ValueError(f"{path}: {', '.join(sorted(twice))} in both [server] and [auth]")
        fields.update(auth)
        sources.update(dict.fromkeys(fields, Source.FILE))
        if "namespaces" in document:
            try:
                namespaces = parse_namespaces(document["namespaces"])
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
    environment = from_environment(environ)
    fields.update(environment)
    sources.update(dict.fromkeys(environment, Source.ENV))
    return Settings(fields, namespaces, sources)


def _auth(table: object, path: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ValueError(f"{path}: [auth] must be a table")
    fields = {}
    for key, value in table.items():
        kind = AUTH_SETTINGS.get(key)
        if kind is None:
            raise ValueError(f"{path}: unknown [auth] key {key!r}")
        if not isinstance(value, kind):
            raise ValueError(f"{path}: [auth] {key} must be a {kind.__name__}")
        fields[key] = value
    return fields
