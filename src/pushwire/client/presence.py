"""Presence: who is in each channel subscribed with `presence=True`, kept up to date from the
server's snapshots, joins and leaves; waiting for it to change; `PresenceEvents`.

After a reconnection the server sends the members again: what changed while the client was
away (the difference between the two snapshots) is announced as joins and leaves too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ClientClosed, Join, Leave, Member, Presence, RequestFailed
from .transports.base import Envelope

__all__ = ["PresenceEvents", "Roster", "parse_presence"]

log = logging.getLogger("pushwire.client")

T = TypeVar("T")


def parse_member(fields: dict[str, Any]) -> Member:
    """A `Member` from its fields in a `presence`, `join` or `leave` envelope."""
    info = fields.get("info")
    return Member(str(fields["member"]), fields.get("user"), info if isinstance(info, dict) else {})


def parse_presence(envelope: Envelope) -> Presence:
    """A `Presence` from a `presence` envelope."""
    members = {}
    for fields in envelope.get("members", ()):
        member = parse_member(fields)
        members[member.member] = member
    return Presence(
        envelope["channel"], int(envelope["count"]), members, bool(envelope.get("truncated"))
    )


class Roster:
    """The members of each channel (`channels`, the client's `presence`), who waits for
    them to change, and the queues of the `PresenceEvents` listening."""

    def __init__(self, max_queue: int) -> None:
        #: The latest `Presence` of each channel.
        self.channels: dict[str, Presence] = {}
        self.closed: ClientClosed | None = None
        self._max_queue = max_queue
        self._changed = asyncio.Event()
        self._listeners: set[asyncio.Queue[Join | Leave]] = set()
        self._snapshots: dict[str, int] = {}  # snapshots received per channel

    def snapshot(self, presence: Presence) -> None:
        """The server's list of members: what changed since the last one (while the client
        was away) is news for the listeners."""
        channel = presence.channel
        before = self.channels.get(channel)
        self.channels[channel] = presence
        self._snapshots[channel] = self._snapshots.get(channel, 0) + 1
        if before is not None:
            for member in presence.members.keys() - before.members.keys():
                self._announce(Join(channel, presence.members[member], presence.count))
            if not before.truncated and not presence.truncated:
                for member in before.members.keys() - presence.members.keys():
                    self._announce(Leave(channel, before.members[member], presence.count))
        self._notify()

    def change(self, envelope: Envelope) -> None:
        """A `join` or `leave` of a channel whose members are known."""
        channel = envelope["channel"]
        presence = self.channels.get(channel)
        if presence is None:
            return
        member = parse_member(envelope["member"])
        members = dict(presence.members)
        event: Join | Leave
        if envelope["type"] == "join":
            members[member.member] = member
            event = Join(channel, member, int(envelope["count"]))
        else:
            members.pop(member.member, None)
            event = Leave(channel, member, int(envelope["count"]))
        truncated = presence.truncated and event.count > len(members)
        self.channels[channel] = Presence(channel, event.count, members, truncated)
        self._announce(event)
        self._notify()

    def forget(self, channel: str) -> None:
        """Unsubscribed: the channel's members are no longer known."""
        self.channels.pop(channel, None)

    def snapshots(self, channel: str) -> int:
        """How many snapshots of `channel` arrived so far."""
        return self._snapshots.get(channel, 0)

    async def next_snapshot(self, channel: str, seen: int, timeout: float) -> None:
        """Until `channel` has had more than `seen` snapshots.

        Raises:
            RequestFailed: `timeout` passed first.
            ClientClosed: the client closed first.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._until(lambda: self.snapshots(channel) != seen or None)
        except TimeoutError:
            raise RequestFailed("timeout", "no presence after subscribing") from None

    async def wait(
        self,
        channel: str,
        count: int | None,
        until: Callable[[Presence], bool] | None,
        timeout: float | None,
    ) -> Presence:
        """`Client.wait_presence()`."""

        def reached() -> Presence | None:
            presence = self.channels.get(channel)
            if presence is None or (count is not None and presence.count != count):
                return None
            return presence if until is None or until(presence) else None

        return await asyncio.wait_for(self._until(reached), timeout)

    def events(self) -> PresenceEvents:
        """A new listener, from now on."""
        return PresenceEvents(self)

    def close(self, closed: ClientClosed) -> None:
        """The client closed: waiters raise `closed`, listeners stop."""
        self.closed = closed
        self._notify()

    async def _until(self, found: Callable[[], T | None]) -> T:
        while (value := found()) is None:
            if self.closed is not None:
                raise self.closed
            await self._changed.wait()
        return value

    def _announce(self, event: Join | Leave) -> None:
        for queue in self._listeners:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("presence event dropped: %d unread already", queue.qsize())

    def _notify(self) -> None:
        # One Event per change: every waiter wakes, later waiters wait for the next one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class PresenceEvents:
    """What `Client.presence_events()` returns: an async iterator of `Join` and `Leave`."""

    def __init__(self, roster: Roster) -> None:
        self._roster = roster
        self._queue: asyncio.Queue[Join | Leave] = asyncio.Queue(roster._max_queue)
        roster._listeners.add(self._queue)

    def __aiter__(self) -> PresenceEvents:
        return self

    async def __anext__(self) -> Join | Leave:
        roster, queue = self._roster, self._queue
        while queue.empty():
            if roster.closed is not None or queue not in roster._listeners:
                raise StopAsyncIteration
            await roster._changed.wait()
        return queue.get_nowait()

    async def aclose(self) -> None:
        self._roster._listeners.discard(self._queue)
        self._roster._notify()
