"""One schema for every `Config` setting: command-line flags, `PUSHWIRE_*` environment
variables and the TOML file (`--config pushwire.toml`), derived from the dataclass fields.

Every field `name` of `pushwire.config.Config` is settable as

- the flag `--name-with-dashes VALUE` (booleans: `--name` / `--no-name`; a few older flags
  keep their own spelling, see `cli.py`), or `--set name=VALUE`;
- the environment variable `PUSHWIRE_NAME` (upper case; a list is comma-separated; a boolean
  is `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`; an empty variable counts as unset);
- the key `name` in the file's `[server]` table (or, for the authentication settings, in
  `[auth]`), with the TOML type of the field (a list of strings for a list).

The first of flag, environment, file and the field's default that sets a field wins. Each
value comes with where it came from (`Source`), which `pushwire serve --print-config` shows.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import functools
import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from . import config as config_module
from .config import Config

__all__ = [
    "ENV_PREFIX",
    "FLAG_DEST",
    "SECRETS",
    "Setting",
    "Source",
    "add_flags",
    "describe",
    "field_docs",
    "flag_values",
    "from_environment",
    "from_table",
    "parse_value",
    "schema",
    "shown",
]

#: The environment variables' prefix.
ENV_PREFIX: Final = "PUSHWIRE_"
#: Settings never shown: `--print-config` prints `***` for them when set.
SECRETS: Final = frozenset({"jwt_secret", "api_key"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class Source(enum.Enum):
    """Where a setting's value came from, strongest first."""

    FLAG = "flag"
    ENV = "env"
    FILE = "file"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Setting:
    """One `Config` field: its name, value type (`str`, `int`, `float`, `bool`, or `tuple`
    for a tuple of strings), whether it may be None, and its default."""

    name: str
    kind: type
    optional: bool
    default: object

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def schema() -> dict[str, Setting]:
    """Every `Config` field, by name, in declaration order."""
    hints = typing.get_type_hints(Config)
    settings = {}
    for field in dataclasses.fields(Config):
        kind, optional = _kind(hints[field.name])
        settings[field.name] = Setting(field.name, kind, optional, field.default)
    return settings


def _kind(hint: object) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _kind(inner)[0], True
    if typing.get_origin(hint) is tuple:
        return tuple, False
    assert isinstance(hint, type), hint
    return hint, False


def parse_value(setting: Setting, text: str) -> object:
    """`text` (a flag's or a variable's) as a value of `setting`.

    Raises:
        ValueError: not a value of the setting's type (a one-line reason).
    """
    kind = setting.kind
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{setting.name} needs true or false, not {text!r}")
    if kind is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind is int or kind is float:
        try:
            return kind(text)
        except ValueError:
            wanted = "an integer" if kind is int else "a number"
            raise ValueError(f"setting {setting.name} needs {wanted}, not {text!r}") from None
    return text


def check_value(setting: Setting, value: object, where: str) -> object:
    """A value from TOML, checked against the setting's type (an int serves as a float; a
    list of strings as a tuple).

    Raises:
        ValueError: the wrong type, said with `where` (the file and table).
    """
    kind = setting.kind
    if kind is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ValueError(f"{where} {setting.name} must be a list of strings")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ValueError(f"{where} {setting.name} must be a {kind.__name__}")


def from_table(table: object, where: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
    """The settings of one TOML table (`allowed`: the names it may hold; None: any field).

    Raises:
        ValueError: not a table, an unknown key, or a value of the wrong type.
    """
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table")
    known = schema()
    names = set(known if allowed is None else allowed)
    values = {}
    for key, value in table.items():
        if key not in names:
            raise ValueError(f"{where}: unknown key {key!r}")
        values[key] = check_value(known[key], value, where)
    return values


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings that `PUSHWIRE_*` variables set (other variables with the prefix, such as
    a test's, are not settings and are ignored).

    Raises:
        ValueError: a variable whose value is not of its setting's type.
    """
    values = {}
    for setting in schema().values():
        text = environ.get(setting.env)
        if text:
            try:
                values[setting.name] = parse_value(setting, text)
            except ValueError as exc:
                raise ValueError(f"{setting.env}: {exc}") from None
    return values


def shown(name: str, value: object) -> str:
    """A value as `--print-config` prints it: secrets masked, a URL's password too."""
    if value is None:
        return "-"
    if name in SECRETS:
        return "***"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password is not None:
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port is not None else ""
            user = parts.username or ""
            return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    return str(value)


def add_flags(parser: argparse.ArgumentParser, covered: Iterable[str]) -> None:
    """A flag for each setting not in `covered` (those have a flag of their own): in one group,
    `--name-with-dashes VALUE`, and `--name` / `--no-name` for a boolean."""
    group = parser.add_argument_group(
        "every other setting of pushwire.config.Config (docs/operations.md); also "
        "PUSHWIRE_<NAME> in the environment and [server] in --config"
    )
    skip = set(covered)
    docs = field_docs()
    for setting in schema().values():
        if setting.name in skip:
            continue
        dest = FLAG_DEST + setting.name
        default = "none" if setting.default is None else shown(setting.name, setting.default)
        about = docs.get(setting.name, "").replace("%", "%%")
        summary = f"{about} (default {default})" if about else f"(default {default})"
        if setting.kind is bool:
            group.add_argument(
                setting.flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=summary,
            )
            continue
        group.add_argument(
            setting.flag,
            dest=dest,
            default=None,
            metavar=setting.kind.__name__.upper() if setting.kind is not tuple else "A,B",
            type=functools.partial(_flag_type, setting),
            help=summary,
        )


#: The prefix of the `argparse` destinations of the flags `add_flags` adds.
FLAG_DEST: Final = "setting_"


def field_docs() -> dict[str, str]:
    """Each `Config` field's `#:` comment, its first sentence (for `--help`); a field right
    under another without a comment of its own shares that one's."""
    try:
        source = inspect.getsource(config_module)
    except (OSError, TypeError):  # installed without its sources (.pyc only): no help text
        return {}
    lines = source.splitlines()
    docs: dict[str, str] = {}
    previous: tuple[str, int] | None = None
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == "Config"):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            comment: list[str] = []
            index = item.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                comment.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            text = " ".join(comment)
            if not text and previous is not None and previous[1] == item.lineno - 1:
                text = docs[previous[0]]
            docs[item.target.id] = text.split(". ")[0].rstrip(".")
            previous = (item.target.id, item.end_lineno or item.lineno)
    return docs


def _flag_type(setting: Setting, text: str) -> object:
    try:
        return parse_value(setting, text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that `add_flags`' flags set on this command line."""
    return {
        name.removeprefix(FLAG_DEST): value
        for name, value in vars(args).items()
        if name.startswith(FLAG_DEST) and value is not None
    }


def describe(config: Config, sources: Mapping[str, Source]) -> str:
    """Every setting of `config`, one a line: name, value (secrets masked), where it came
    from (`pushwire serve --print-config`)."""
    values = dataclasses.asdict(config)
    names = list(schema())
    width = max(len(name) for name in names)
    lines = []
    for name in names:
        source = sources.get(name, Source.DEFAULT).value
        lines.append(f"{name:<{width}}  {shown(name, values[name]):<30}  ({source})")
    return "\n".join(lines)
