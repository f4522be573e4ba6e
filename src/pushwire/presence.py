"""Presence: who is in a channel, as every node sees it. Pure values and one sans-I/O table.

A member is a session in a channel: one user with two tabs is two members. Each member is an
entry, the JSON object `{"member": <public id>, "user": <id or null>, "info": {...}}`, encoded
once when the session joins and passed around as bytes from then on (into snapshots and
`join`/`leave` envelopes without being parsed again).

Every change of a channel's membership has a version, one more than the last: a node that
read a snapshot at version 7 skips the events at or before 7 it receives afterwards, so a
subscriber sees each change once, in order, on top of its snapshot.

Entries expire: the node that holds a member refreshes it every `presence_ttl / 3` seconds;
an entry not refreshed for `presence_ttl` seconds (its node died without saying goodbye) is
removed by whichever node sweeps the channel next, and its leave announced like any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

__all__ = ["PresenceEvent", "PresenceSnapshot", "PresenceTable", "encode_entry"]


def encode_entry(member: str, user: str | None, info: Mapping[str, Any]) -> bytes:
    """A member's entry as the JSON every node and client sees.

    Joined from its parts into a bytes object of its own size: orjson's result keeps the
    4 KiB buffer it was written into (a copy of it was 0.9k instructions more), and an entry
    lives as long as its member (4 KiB per subscriber).
    """
    return _join((_MEMBER, _dumps(member), _USER, _dumps(user), _INFO, _dumps(info), b"}"))


_join = b"".join
_dumps = orjson.dumps
_MEMBER: Final = b'{"member":'
_USER: Final = b',"user":'
_INFO: Final = b',"info":'


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """One member joined or left `channel`; `count` is the channel's count right after."""

    channel: str
    version: int
    count: int
    kind: Literal["join", "leave"]
    entry: bytes


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """A channel's members at `version`: `count` of them, `entries` at most the limit asked."""

    channel: str
    version: int
    count: int
    entries: list[bytes]


@dataclass(slots=True)
class _Members:
    version: int = 0
    # member -> entry; dicts keep join order, which snapshots follow.
    entries: dict[str, bytes] = field(default_factory=dict)
    # member -> expiry, for the members that expire (none in the memory broker: a tuple of
    # entry and expiry per member was 56 bytes a subscriber).
    expiries: dict[str, float] = field(default_factory=dict)


class PresenceTable:
    """Members of channels with expiry times: the memory broker's presence, and the model
    the Redis broker's scripts follow. No clock: every call that needs the time gets `now`.

    A channel is forgotten once its last member leaves; its version starts again at 1, which
    no watcher can confuse with an older one (every watcher is itself a member, so a channel
    with a watcher is never forgotten).
    """

    def __init__(self) -> None:
        self._channels: dict[str, _Members] = {}

    def join(
        self,
        channel: str,
        member: str,
        entry: bytes,
        expires: float = math.inf,
        announce: bool = True,
    ) -> list[PresenceEvent]:
        """Add (or refresh) a member; a `join` event when it was not there (the version
        counts it, but no event is made without `announce`: nobody would receive it)."""
        members = self._channels.get(channel)
        if members is None:
            members = self._channels[channel] = _Members()
        known = member in members.entries
        members.entries[member] = entry
        if expires != math.inf:
            members.expiries[member] = expires
        elif members.expiries:
            members.expiries.pop(member, None)
        if known:
            return []
        members.version += 1
        if not announce:
            return []
        return [PresenceEvent(channel, members.version, len(members.entries), "join", entry)]

    def add(self, channel: str, member: str, entry: bytes) -> None:
        """`join(channel, member, entry, announce=False)`: no expiry, no event (the memory
        broker's join where nobody watches the channel: one call, the fewest steps)."""
        members = self._channels.get(channel)
        if members is None:
            members = self._channels[channel] = _Members()
        entries = members.entries
        if member not in entries:
            members.version += 1
        entries[member] = entry
        if members.expiries:
            members.expiries.pop(member, None)

    def leave(
        self, channel: str, members: Iterable[str], announce: bool = True
    ) -> list[PresenceEvent]:
        """Remove members; a `leave` event for each that was there (with `announce`)."""
        state = self._channels.get(channel)
        if state is None:
            return []
        events = []
        for member in members:
            removed = state.entries.pop(member, None)
            if removed is not None:
                state.expiries.pop(member, None)
                state.version += 1
                if announce:
                    events.append(
                        PresenceEvent(channel, state.version, len(state.entries), "leave", removed)
                    )
        if not state.entries:
            del self._channels[channel]
        return events

    def refresh(self, channel: str, members: Iterable[str], expires: float) -> None:
        """Push back the expiry of members that are still there."""
        state = self._channels.get(channel)
        if state is None:
            return
        for member in members:
            if member in state.entries and expires != math.inf:
                state.expiries[member] = expires
            elif member in state.entries:
                state.expiries.pop(member, None)

    def expire(self, now: float) -> list[PresenceEvent]:
        """Remove every member whose expiry is at or before `now`; their `leave` events."""
        events = []
        for channel, state in list(self._channels.items()):
            gone = [member for member, expires in state.expiries.items() if expires <= now]
            if gone:
                events += self.leave(channel, gone)
        return events

    def snapshot(self, channel: str, limit: int) -> PresenceSnapshot:
        """The channel's count and its first `limit` members in join order."""
        state = self._channels.get(channel)
        if state is None:
            return PresenceSnapshot(channel, 0, 0, [])
        entries: list[bytes] = []
        for entry in state.entries.values():
            if len(entries) >= limit:
                break
            entries.append(entry)
        return PresenceSnapshot(channel, state.version, len(state.entries), entries)

    def count(self, channel: str) -> int:
        state = self._channels.get(channel)
        return len(state.entries) if state is not None else 0
