"""Presence as the hub serves it: members announced through the broker, watchers fed.

Every session in a channel is a member, announced to every node through the broker
(`pushwire.presence` is the data model). A session that merely lost its connection stays a
member while it waits out `session_grace`: reconnecting does not make it leave and join again
(the session lifecycle keeps it present). Sessions that subscribed with presence (watchers) get
a snapshot, then each `join` and `leave` after it, once and in order, batched per loop turn.
After the broker lost its connection, events may be lost: every watcher gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..broker.base import Broker
from ..config import Config
from ..errors import PushwireError
from ..presence import PresenceEvent, PresenceSnapshot, encode_entry
from .identity import check_channel
from .sessions import Session
from .transport import Framing, Transport, write_failed

__all__ = ["Presence", "event_fields", "snapshot_fields"]

log = logging.getLogger("pushwire.hub")


@dataclass(slots=True)
class _Watched:
    """A channel with watchers here, or with a snapshot being read (kept while either)."""

    watchers: dict[Session, Transport] = field(default_factory=dict)
    # The snapshot version of the watchers that have not yet seen an event after it.
    skip: dict[Session, int] = field(default_factory=dict)
    # Events not yet written: they wait for the end of the turn, or while a snapshot is
    # read (`hold` above 0) so that they follow it.
    pending: list[PresenceEvent] = field(default_factory=list)
    hold: int = 0


class Presence:
    """Channel membership announced through the broker, and the watchers of each channel.

    Args:
        broker: keeps every node's members and reports their joins and leaves
            (`Broker.attach_presence` is wired to `event`).
        config: `presence_max_members`, `max_channel_name`.
    """

    def __init__(self, broker: Broker, config: Config) -> None:
        self._broker = broker
        self._config = config
        self._watched: dict[str, _Watched] = {}
        #: Whether a session here watches `channel` (or a snapshot of it is being read):
        #: `event` drops the others' events. (The dict's own `in`: the memory broker asks it
        #: at every join and leave.)
        self.watched: Callable[[str], bool] = self._watched.__contains__

    # -- membership -------------------------------------------------------------------------

    def join(self, session: Session, channel: str) -> None:
        """`session` is a member of `channel`, unless it is one already."""
        if not session.add_present(channel):
            return
        entry = encode_entry(session.public_id, session.user, session.info)
        self._broker.presence_join(channel, session.public_id, entry)

    def leave(self, session: Session, channel: str) -> None:
        """`session` is no longer a member of `channel` (nothing happens if it was none)."""
        if not session.discard_present(channel):
            return
        self._broker.presence_leave(channel, session.public_id)

    async def snapshot(self, channel: str) -> PresenceSnapshot:
        """Who is in `channel` on every node: the count and at most `presence_max_members`
        entries (JSON bytes, see pushwire.presence).

        Raises:
            BadRequest: invalid channel name.
            Unavailable: the broker cannot be reached.
        """
        check_channel(channel, self._config.max_channel_name)
        return await self._broker.presence(channel, self._config.presence_max_members)

    # -- watchers ---------------------------------------------------------------------------

    async def watch(self, session: Session, channel: str) -> None:
        """Send `session` (subscribed to `channel`) the channel's members, then every `join`
        and `leave` after them, each once and in order.

        Raises:
            Unavailable: the broker cannot be reached (the session is no watcher then).
        """
        if channel not in session.channels:
            return
        watched = self._watched.get(channel)
        if watched is None:
            watched = self._watched[channel] = _Watched()
        watched.hold += 1  # events wait while the snapshot is read, then follow it
        try:
            snapshot = await self.snapshot(channel)
            transport = session.transport
            if channel in session.channels and transport is not None:
                transport.write(transport.framing.frame_control(snapshot_fields(snapshot)))
                watched.watchers[session] = transport
                watched.skip[session] = snapshot.version
        finally:
            self._release(channel, watched)

    def unwatch(self, session: Session, channel: str) -> None:
        """`session` left `channel`: no more presence events of it."""
        watched = self._watched.get(channel)
        if watched is None:
            return
        watched.watchers.pop(session, None)
        watched.skip.pop(session, None)
        if not (watched.watchers or watched.hold):
            del self._watched[channel]

    async def resnapshot(self, channels: Iterable[str]) -> None:
        """After the broker lost its connection, events may be lost: a fresh snapshot to
        every watcher of these channels."""
        for channel in channels:
            watched = self._watched.get(channel)
            if watched is None or not watched.watchers:
                continue
            watched.hold += 1
            try:
                snapshot = await self.snapshot(channel)
            except PushwireError as exc:
                log.warning("cannot read presence of %s after a broker outage: %s", channel, exc)
            else:
                fields = snapshot_fields(snapshot)
                for session, transport in watched.watchers.items():
                    transport.write(transport.framing.frame_control(fields))
                    watched.skip[session] = snapshot.version
            finally:
                self._release(channel, watched)

    def _release(self, channel: str, watched: _Watched) -> None:
        """A snapshot read of `channel` ended: what waited for it goes out now."""
        watched.hold -= 1
        if watched.hold:
            return
        self._flush(channel)
        if not watched.watchers:
            del self._watched[channel]

    # -- events -----------------------------------------------------------------------------

    def event(self, event: PresenceEvent) -> None:
        """The broker reports a join or leave: it goes out at the end of this turn."""
        watched = self._watched.get(event.channel)
        if watched is None:
            return
        watched.pending.append(event)
        if len(watched.pending) == 1 and not watched.hold:
            asyncio.get_running_loop().call_soon(self._flush, event.channel)

    def _flush(self, channel: str) -> None:
        watched = self._watched.get(channel)
        if watched is None or watched.hold or not watched.pending:
            return
        events, watched.pending = watched.pending, []
        channel_json = orjson.dumps(channel).decode()
        frames: dict[Framing, list[tuple[int, bytes]]] = {}
        joined: dict[Framing, bytes] = {}
        skip = watched.skip
        for session, transport in watched.watchers.items():
            framing = transport.framing
            framed = frames.get(framing)
            if framed is None:
                framed = frames[framing] = [
                    (event.version, framing.frame_control(event_fields(event, channel_json)))
                    for event in events
                ]
                joined[framing] = b"".join(frame for _, frame in framed)
            seen = skip.get(session)
            try:
                if seen is None:
                    transport.write(joined[framing])
                    continue
                fresh = [frame for version, frame in framed if version > seen]
                if fresh:
                    del skip[session]  # past its snapshot: every later event is news to it
                    transport.write(b"".join(fresh))
            except Exception:
                write_failed(transport)


def snapshot_fields(snapshot: PresenceSnapshot) -> dict[str, Any]:
    """The `presence` envelope of a snapshot (the entries go in as they are)."""
    return {
        "type": "presence",
        "channel": snapshot.channel,
        "count": snapshot.count,
        "members": orjson.Fragment(b"[" + b",".join(snapshot.entries) + b"]"),
        "truncated": snapshot.count > len(snapshot.entries),
    }


def event_fields(event: PresenceEvent, channel_json: str) -> dict[str, Any]:
    """The `join` or `leave` envelope of an event."""
    return {
        "type": event.kind,
        "channel": orjson.Fragment(channel_json),
        "count": event.count,
        "member": orjson.Fragment(event.entry),
    }
