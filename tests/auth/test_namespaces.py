"""Namespaces from configuration: which rule a channel follows, and bad configuration said in
one line."""

from __future__ import annotations

import pytest

from pushwire.auth.namespaces import (
    OPEN,
    Namespace,
    Namespaces,
    namespace_of,
    parse_namespaces,
)
from pushwire.errors import Forbidden


@pytest.mark.parametrize(
    ("channel", "namespace"),
    [("lobby", ""), ("chat:lobby", "chat"), ("$chat:ops", "chat"), ("$ops", ""), ("a:b:c", "a")],
)
def test_a_channels_namespace_is_its_name_up_to_the_first_colon(
    channel: str, namespace: str
) -> None:
    assert namespace_of(channel) == namespace


def test_listed_namespaces_and_nothing_else() -> None:
    chat = Namespace("chat", subscribe="anyone", publish="members")
    rules = Namespaces(parse_namespaces({"chat": {"subscribe": "anyone"}}), OPEN)
    assert rules.configured and rules.rule("chat:lobby") == chat
    with pytest.raises(Forbidden, match="no namespace 'news' on this server"):
        rules.rule("news:today")
    with pytest.raises(Forbidden, match="no namespace ''"):
        rules.rule("lobby")  # the default namespace is listed only when configured


def test_without_namespaces_every_channel_follows_the_default() -> None:
    rules = Namespaces(None, OPEN)
    assert not rules.configured and rules.rule("anything:at all") is OPEN


def test_the_users_a_channel_names() -> None:
    assert Namespaces.users_named("dm:alice,bob") == {"alice", "bob"}
    assert Namespaces.users_named("$dm:alice,,bob") == {"alice", "bob"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"chat": {"subscribe": "everyone"}}, "subscribe must be one of anyone, authenticated"),
        ({"chat": {"publish": "all"}}, "publish must be one of nobody, members"),
        ({"chat": {"presence": "yes"}}, "presence must be true or false"),
        ({"chat": {"colour": "red"}}, "unknown rule 'colour'"),
        ({"chat": "open"}, "expected a table of rules"),
        ({"a:b": {}}, "a name has no ':'"),
        ({"$x": {}}, "does not start with \\$"),
    ],
)
def test_bad_configuration_is_one_clear_line(table: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_namespaces(table)
