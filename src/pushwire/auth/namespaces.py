"""Channel namespaces: who may read and write which channels, from configuration, not code.

A channel's namespace is the part of its name before the first `:` (`chat:lobby` is in
`chat`); a name without `:` is in the default namespace, `""`. A leading `$` makes a channel
private: `$chat:ops` is in `chat` too, and only a user holding a subscription token for that
very channel may read it (`pushwire.auth.tokens`).

A namespace's rules:

- `subscribe`, who may read: `anyone`; `authenticated` (a connection with a user); `token`
  (a user whose connection token lists the channel in its `channels` claim, or who holds a
  subscription token for it); `handler` (whoever the app's `on_subscribe` handler lets in;
  refused when there is none).
- `publish`, who may write besides the server (the HTTP API, `hub.publish`): `nobody`;
  `members` (sessions subscribed to the channel); `authenticated`; `anyone`.
- `presence` (`true`, `false`): whether members see who else is there.
- `users_in_name` (`true`, `false`): the name after `namespace:` lists the users who may read
  and write the channel, comma-separated (`dm:alice,bob`); nobody else may.

A channel whose namespace the configuration does not list is refused, so a typo is never an
open channel. Without any namespace configured, every channel follows one default rule: open
to anyone in an open server, `authenticated` for both reading and writing once authentication
is configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from ..errors import Forbidden

__all__ = ["AUTHENTICATED", "OPEN", "Namespace", "Namespaces", "parse_namespaces"]

SubscribeRule = Literal["anyone", "authenticated", "token", "handler"]
PublishRule = Literal["nobody", "members", "authenticated", "anyone"]
#: The marker of a private channel's name.
PRIVATE: Final = "$"


@dataclass(frozen=True, slots=True)
class Namespace:
    """The rules of one namespace (see the module docstring)."""

    name: str
    subscribe: SubscribeRule = "authenticated"
    publish: PublishRule = "members"
    presence: bool = True
    users_in_name: bool = False


#: The rule of every channel in an open server (no authentication configured).
OPEN: Final = Namespace("", subscribe="anyone", publish="anyone")
#: The rule of every channel once authentication is configured and no namespace is.
AUTHENTICATED: Final = Namespace("", subscribe="authenticated", publish="authenticated")


def namespace_of(channel: str) -> str:
    """`chat:lobby` and `$chat:lobby` -> `chat`; `lobby` -> `""`."""
    name = channel[1:] if channel.startswith(PRIVATE) else channel
    head, colon, _ = name.partition(":")
    return head if colon else ""


def is_private(channel: str) -> bool:
    return channel.startswith(PRIVATE)


class Namespaces:
    """The rules of every channel: listed namespaces, or one default for all."""

    def __init__(self, rules: Iterable[Namespace] | None, default: Namespace) -> None:
        self._rules = {rule.name: rule for rule in rules} if rules is not None else None
        self._default = default

    @property
    def configured(self) -> bool:
        """Whether namespaces are listed (an unlisted one is refused)."""
        return self._rules is not None

    def rule(self, channel: str) -> Namespace:
        """The rules of `channel`.

        Raises:
            Forbidden: its namespace is not configured.
        """
        rules = self._rules
        if rules is None:
            return self._default
        name = namespace_of(channel)
        rule = rules.get(name)
        if rule is None:
            raise Forbidden(f"no namespace {name!r} on this server (channel {channel!r})")
        return rule

    @staticmethod
    def users_named(channel: str) -> frozenset[str]:
        """The users a `users_in_name` channel lists (`dm:alice,bob` -> alice, bob)."""
        name = channel[1:] if channel.startswith(PRIVATE) else channel
        return frozenset(user for user in name.partition(":")[2].split(",") if user)


def parse_namespaces(table: Mapping[str, Any]) -> tuple[Namespace, ...]:
    """Namespaces from configuration: `{name: {rule: value}}` (a TOML file's
    `[namespaces.<name>]` tables; `[namespaces.""]` is the default namespace).

    Raises:
        ValueError: an unknown rule or value, said in one line.
    """
    rules = []
    fields = {"subscribe": SubscribeRule, "publish": PublishRule}
    for name, options in table.items():
        if not isinstance(options, Mapping):
            raise ValueError(f"namespace {name!r}: expected a table of rules")
        if ":" in name or name.startswith(PRIVATE):
            raise ValueError(f"namespace {name!r}: a name has no ':' and does not start with $")
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key in fields:
                allowed = get_args(fields[key])
                if value not in allowed:
                    raise ValueError(
                        f"namespace {name!r}: {key} must be one of {', '.join(allowed)}, "
                        f"not {value!r}"
                    )
            elif key in ("presence", "users_in_name"):
                if not isinstance(value, bool):
                    raise ValueError(f"namespace {name!r}: {key} must be true or false")
            else:
                raise ValueError(f"namespace {name!r}: unknown rule {key!r}")
            values[key] = value
        rules.append(Namespace(name, **values))
    return tuple(rules)
