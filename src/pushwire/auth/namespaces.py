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
- `history_size` (messages, 0 to 100,000) and `history_ttl` (seconds, up to a week): how much
  of each channel is kept for recovery, instead of the server's `history_size` and
  `history_ttl` (a client that comes back from further away is told of the gap).

A channel whose namespace the configuration does not list is refused, so a typo is never an
open channel. Without any namespace configured, every channel follows one default rule: open
to anyone in an open server, `authenticated` for both reading and writing once authentication
is configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from ..broker.base import HistoryBounds
from ..errors import Forbidden

__all__ = ["AUTHENTICATED", "OPEN", "Namespace", "Namespaces", "parse_namespaces"]

SubscribeRule = Literal["anyone", "authenticated", "token", "handler"]
PublishRule = Literal["nobody", "members", "authenticated", "anyone"]
#: The marker of a private channel's name.
PRIVATE: Final = "$"
#: The most history a namespace may keep per channel: messages, and seconds (a Redis broker
#: keeps a channel's position for a week after its last publish: no message outlives it).
MAX_HISTORY_SIZE: Final = 100_000
MAX_HISTORY_TTL: Final = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Namespace:
    """The rules of one namespace (see the module docstring)."""

    name: str
    subscribe: SubscribeRule = "authenticated"
    publish: PublishRule = "members"
    presence: bool = True
    users_in_name: bool = False
    #: Messages of each channel kept for recovery; None: the server's `history_size`.
    history_size: int | None = None
    #: Seconds a message stays in history; None: the server's `history_ttl`.
    history_ttl: float | None = None


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

    def __init__(
        self,
        rules: Iterable[Namespace] | None,
        default: Namespace,
        *,
        history_size: int = 1000,
        history_ttl: float = 3600.0,
    ) -> None:
        self._rules = {rule.name: rule for rule in rules} if rules is not None else None
        self._default = default
        # The server's history bounds, for a namespace that sets only one of its own.
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._bounds: dict[str, HistoryBounds] = {}

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

    def history_bounds(self, channel: str) -> HistoryBounds | None:
        """The history `channel`'s namespace keeps, or None when it keeps the server's
        (`Broker.set_history_policy`); an unknown namespace publishes nothing."""
        rules = self._rules
        rule = rules.get(namespace_of(channel)) if rules is not None else None
        if rule is None or (rule.history_size is None and rule.history_ttl is None):
            return None
        bounds = self._bounds.get(rule.name)
        if bounds is None:
            size = rule.history_size if rule.history_size is not None else self._history_size
            ttl = rule.history_ttl if rule.history_ttl is not None else self._history_ttl
            bounds = self._bounds[rule.name] = HistoryBounds(size, ttl)
        return bounds

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
            elif key == "history_size":
                if type(value) is not int or not 0 <= value <= MAX_HISTORY_SIZE:
                    raise ValueError(
                        f"namespace {name!r}: history_size must be a whole number of messages "
                        f"from 0 to {MAX_HISTORY_SIZE}"
                    )
            elif key == "history_ttl":
                if type(value) not in (int, float) or not 0 < value <= MAX_HISTORY_TTL:
                    raise ValueError(
                        f"namespace {name!r}: history_ttl must be seconds, over 0 and at most "
                        f"{MAX_HISTORY_TTL:g} (a week)"
                    )
            else:
                raise ValueError(f"namespace {name!r}: unknown rule {key!r}")
            values[key] = value
        rules.append(Namespace(name, **values))
    return tuple(rules)
