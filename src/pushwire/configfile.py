"""The configuration file (`pushwire serve --config pushwire.toml`): who may do what.

```toml
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
wins over the environment, which wins over the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .auth.namespaces import Namespace, parse_namespaces

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
#: Settings read from the environment, by variable.
ENVIRONMENT: Final[Mapping[str, str]] = {
    "PUSHWIRE_JWT_SECRET": "jwt_secret",
    "PUSHWIRE_API_KEY": "api_key",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What a configuration file and the environment set: `Config` fields and namespaces."""

    fields: Mapping[str, Any]
    namespaces: tuple[Namespace, ...] | None


def load(path: str | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings of the file at `path` (None: no file), then of the environment.

    Raises:
        ValueError: the file cannot be read, is not TOML, or has an unknown section, key or
            value (one line that says which).
    """
    fields: dict[str, Any] = {}
    namespaces = None
    if path is not None:
        try:
            document = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
        unknown = set(document) - {"auth", "namespaces"}
        if unknown:
            raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
        fields.update(_auth(document.get("auth", {}), path))
        if "namespaces" in document:
            try:
                namespaces = parse_namespaces(document["namespaces"])
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
    for variable, name in ENVIRONMENT.items():
        value = environ.get(variable)
        if value:
            fields[name] = value
    return Settings(fields, namespaces)


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
