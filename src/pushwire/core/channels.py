"""Channels: who is subscribed here, and the fan-out of what the broker delivers to them.

Fan-out is encode-once: a channel message is framed once per framing in use on that channel
(`Framing.frame_message`), and the same bytes object is written to every subscriber using
that framing. The per-subscriber work is one `write` call.

Fan-out is also batched: what is published to a channel within one turn of the event loop
goes to each subscriber in one write (a system call: what fan-out costs). A channel's
messages still arrive in offset order, and membership changes flush what is pending first,
so nobody gets a message from before it joined or misses one from before it left.

Nothing is lost silently: each channel remembers the last position it fanned out; a
subscriber catching up from history, or recovery after a broker outage, holds the channel's
live messages until history is written, and what history no longer holds is told as a `gap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from ..broker.base import Broker
from ..config import Config
from ..errors import PushwireError
from ..message import Message, Position
from .identity import check_channel
from .presence import Presence
from .sessions import Session
from .tasks import BackgroundTasks, log_failure
from .transport import Framing, Transport, write_failed

__all__ = ["MAX_BATCH_BYTES", "Channels", "HubStats"]

#: Bytes of pending channel messages after which fan-out happens at once, not at turn's end.
MAX_BATCH_BYTES: Final = 256 * 1024

#: Seconds before a recovery the broker refused is tried again, doubling up to the max.
RECOVERY_RETRY_FIRST: Final = 0.1
RECOVERY_RETRY_MAX: Final = 5.0

log = logging.getLogger("pushwire.hub")


@dataclass(slots=True)
class HubStats:
    """Counters the hub keeps; `frames_encoded` counts Framing calls for channel messages.
    Read at scrape time by `pushwire.metrics`: each is one integer add where it happens (a
    fan-out adds once per channel batch and framing, not per subscriber)."""

    published: int = 0
    frames_encoded: int = 0
    deliveries: int = 0
    #: Bytes of the messages published (their data), and of the frames written by fan-out.
    published_bytes: int = 0
    delivered_bytes: int = 0
    #: Connections of sessions that ended, by close code (4001: a slow consumer).
    closes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Channel:
    # framing -> session -> the transport to write to (fan-out reads transports directly)
    members: dict[Framing, dict[Session, Transport]] = field(default_factory=dict)
    count: int = 0
    # The broker subscription of this process (done once the broker confirmed it).
    ready: asyncio.Future[None] | None = None
    # The last position fanned out here: anything at or before it is not sent twice.
    epoch: str | None = None
    offset: int = 0
    # The position above was only noted for subscribers (`Channels.note`), nothing fanned
    # out since: a subscriber whose read was answered later may lower it.
    noted: bool = False
    # The newest position of the channel known here (fanned out, or read for a subscriber),
    # with the broker's `continuity` from when it was known (None: not receiving then), and,
    # once the broker lost the channel and began a new epoch while this process received it
    # all along, the newest known of the epoch before: where it ended (nothing of that
    # epoch can have been stored after it without reaching here).
    latest: Position | None = None
    latest_at: int | None = None
    ended: Position | None = None
    ended_at: int | None = None
    # Catch-ups in progress (a subscriber reading history, recovery after an outage):
    # while above 0, this channel's messages wait, so they go out after the history.
    hold: int = 0
    # Recoveries whose history read is still to be sent: it brings all stored so far, so
    # live messages meanwhile are dropped (bounded, however long the broker refuses it).
    rereads: int = 0
    # Presence snapshots being read: while above 0, the channel stays even with no member.
    keep: int = 0


def _fresh(state: _Channel, messages: list[Message], stamp: int | None) -> list[Message]:
    """The messages not fanned out yet, in offset order; moves the channel's position.

    Live delivery and history may overlap or interleave (a subscriber's catch-up, recovery
    after a broker outage): sort, and drop what is at or before the last position sent.
    `stamp`: the broker's `continuity` now.
    """
    if any(a.offset > b.offset for a, b in itertools.pairwise(messages)):
        newest = messages[-1].epoch  # an older epoch (before a broker lost its data) goes first
        messages = sorted(messages, key=lambda m: (m.epoch == newest, m.offset))
    fresh = []
    for message in messages:
        if message.epoch == state.epoch and message.offset <= state.offset:
            continue
        _move(state, message.epoch, message.offset, stamp)
        fresh.append(message)
    return fresh


def _move(state: _Channel, epoch: str, offset: int, stamp: int | None) -> None:
    """The channel's fan-out position is now (epoch, offset)."""
    state.epoch, state.offset = epoch, offset
    state.noted = False
    _note(state, Position(epoch, offset), stamp)


def _note(state: _Channel, position: Position, stamp: int | None) -> None:
    """`position` of the channel exists, known while the broker's `continuity` was `stamp`
    (and still is): the newest known, unless one newer is. A new epoch keeps where the last
    one ended only when this process received the channel all along since it knew that end:
    across a lost broker connection more epochs may have come and gone unseen (Redis
    restarted twice), so nothing says which messages were lost."""
    latest = state.latest
    if latest is None or latest.epoch != position.epoch:
        if latest is not None and stamp is not None and state.latest_at == stamp:
            state.ended, state.ended_at = latest, stamp
        else:
            state.ended = state.ended_at = None
        state.latest, state.latest_at = position, stamp
    elif position.offset >= latest.offset:
        state.latest, state.latest_at = position, stamp


class Channels:
    """The channels of this process's sessions, and the fan-out of their messages.

    Args:
        broker: subscribed once per channel in use here (`Broker.attach` is wired to
            `deliver`); its history serves catch-ups and recovery.
        config: `max_channel_name`.
        presence: told as sessions join and leave channels.
        stats: counts what fan-out framed and delivered.
        tasks: runs the broker's unsubscriptions.
    """

    def __init__(
        self,
        broker: Broker,
        config: Config,
        presence: Presence,
        stats: HubStats,
        tasks: BackgroundTasks,
    ) -> None:
        self._broker = broker
        self._config = config
        self._presence = presence
        self._stats = stats
        self._tasks = tasks
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[str, list[Message]] = {}
        self._pending_bytes = 0
        self._flush_scheduled = False

    # -- membership -------------------------------------------------------------------------

    def subscribe(self, session: Session, channel: str, *, present: bool = True) -> None:
        """Add a session to a channel now (whether it may is `Access.check_subscribe`'s
        question); `present`: it joins the channel's presence unless it is there already
        (False where the namespace has presence off). `Hub.watch_presence` then sends it the
        members and their changes."""
        transport = session.transport
        if session.closed or transport is None:
            return
        if self._pending:
            self.flush()
        # One string per channel name, not one per subscriber (in its session, its presence).
        channel = sys.intern(channel)
        state = self._channels.get(channel) or self._state(channel)
        if session.channels.include(channel):
            state.members.setdefault(transport.framing, {})[session] = transport
            state.count += 1
        if present:
            self._presence.join(session, channel)

    def unsubscribe(self, session: Session, channel: str, *, leave: bool = True) -> None:
        """Take a session out of a channel; `leave`: out of its presence too (False keeps a
        detached session present while it waits out its grace)."""
        if leave:
            self._presence.leave(session, channel)
        state = self._channels.get(channel)
        if state is None or channel not in session.channels:
            return
        if self._pending:
            self.flush()
        session.channels.discard(channel)
        for framing, members in list(state.members.items()):
            if members.pop(session, None) is not None and not members:
                del state.members[framing]
        self._presence.unwatch(session, channel)
        state.count -= 1
        if state.count == 0 and not state.hold and not state.keep:
            self._end(channel)

    def unsubscribe_all(self, session: Session, *, leave: bool) -> None:
        """Take a session out of every channel; `leave`: out of every channel's presence too,
        those it stayed present in while detached included."""
        for channel in list(session.channels):
            self.unsubscribe(session, channel, leave=leave)
        if leave:
            for channel in session.present:  # (a tuple: `leave` replaces it, this one stays)
                self._presence.leave(session, channel)

    def counts(self) -> tuple[int, int]:
        """Channels with a subscriber (or a catch-up) here, and subscriptions (sessions times
        channels) here: one pass over the channels, for metrics."""
        return len(self._channels), sum(state.count for state in self._channels.values())

    def subscriber_count(self, channel: str) -> int:
        """Sessions of this process in `channel`."""
        state = self._channels.get(channel)
        return state.count if state is not None else 0

    def _state(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            state.ready = asyncio.ensure_future(self._broker.subscribe(channel))
            state.ready.add_done_callback(log_failure)
        return state

    def _end(self, channel: str) -> None:
        del self._channels[channel]
        self._tasks.run(self._broker.unsubscribe(channel))

    # -- positions and catch-ups ------------------------------------------------------------

    async def prepare(self, channel: str) -> None:
        """Make sure this process receives `channel`'s messages (the broker confirmed its
        subscription) before a subscriber reads the channel's position."""
        ready = self._state(channel).ready
        if ready is not None:
            await asyncio.shield(ready)

    async def position(self, channel: str) -> Position:
        """The channel's last position, as the broker has it.

        Raises:
            BadRequest: invalid channel name.
        """
        return await self._broker.position(check_channel(channel, self._config.max_channel_name))

    def continuity(self) -> int | None:
        """The broker's `continuity` now: take it before reading a channel's position or
        history, for `note` and `ended`."""
        return self._broker.continuity

    def note(self, channel: str, position: Position, stamp: int | None) -> None:
        """`position` of `channel` was read from the broker for a subscriber while this
        process receives the channel (`prepare` returned), the read begun while the broker's
        `continuity` was `stamp`: see `ended`. Before any message
        was fanned out here it is also where fan-out (and recovery after a broker outage)
        goes on from: every message after it reaches this process live, or through
        `recover` if the broker's connection is lost before it does."""
        state = self._channels.get(channel)
        if state is not None:
            if state.epoch is None:
                state.epoch, state.offset = position.epoch, position.offset
                state.noted = True
            elif state.noted:
                # Reads of several subscribers are answered in any order: fan-out starts
                # from the earliest (the others drop what they have by offset). Another
                # epoch: nothing says which was read first, so fan-out skips nothing.
                if position.epoch != state.epoch:
                    state.offset = 0
                elif position.offset < state.offset:
                    state.offset = position.offset
            if stamp != self._broker.continuity:
                stamp = None  # the broker's connection was lost during the read
            _note(state, position, stamp)

    def ended(self, channel: str, epoch: str, then: str, stamp: int | None) -> Position | None:
        """Where `channel`'s `epoch` ended, as far as this process knows, when `then` is the
        epoch that followed it (the one history is in, read while the broker's `continuity`
        was `stamp`), None when not known.

        Known only if this process received the channel all along (the broker's
        `continuity` unchanged) since it knew that position until `then` began and until
        now: then nothing of `epoch` after it can have reached the broker without reaching
        here, and no other epoch came between. After a lost broker connection (a Redis
        restart) it is not known: what this process did not see is counted as lost."""
        state = self._channels.get(channel)
        if state is None or stamp is None or stamp != self._broker.continuity:
            return None
        latest, ended = state.latest, state.ended
        if latest is not None and latest.epoch == epoch and state.latest_at == stamp:
            return latest  # `then` began after it, unseen here yet
        if (
            ended is not None
            and ended.epoch == epoch
            and state.ended_at == stamp
            and latest is not None
            and latest.epoch == then
        ):
            return ended
        return None

    @contextlib.contextmanager
    def holding(self, channel: str) -> Iterator[None]:
        """While inside, `channel`'s messages wait here (others keep flowing): a subscriber
        writes what history holds first, and live messages follow without a gap or a
        reordering. Leaving flushes what waited."""
        state = self._state(channel)
        state.hold += 1
        try:
            yield
        finally:
            state.hold -= 1
            if not state.hold and channel in self._pending:
                self.flush()

    @contextlib.contextmanager
    def keeping(self, channel: str) -> Iterator[None]:
        """While inside, `channel` stays subscribed here even if its last subscriber leaves
        (so the presence events that follow a snapshot being read keep coming); leaving ends
        it if nobody is left."""
        state = self._channels.get(channel)
        if state is None:
            yield
            return
        state.keep += 1
        try:
            yield
        finally:
            state.keep -= 1
            if not (state.count or state.hold or state.keep):
                self._end(channel)

    # -- fan-out ----------------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        """The broker hands over a channel message: it joins this turn's batch."""
        channel = message.channel
        if channel not in self._channels:
            return
        pending = self._pending.get(channel)
        if pending is None:
            self._pending[channel] = [message]
        else:
            pending.append(message)
        self._pending_bytes += len(message.data)
        if self._pending_bytes > MAX_BATCH_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Fan out every pending channel message now: each message framed once per framing,
        one write per subscriber per channel."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        self._pending_bytes = 0
        stats = self._stats
        stamp = self._broker.continuity
        for channel, messages in pending.items():
            state = self._channels.get(channel)
            if state is None:
                continue
            if state.hold:
                if not state.rereads:
                    self._pending[channel] = messages  # a catch-up is in progress: wait
                continue
            messages = _fresh(state, messages, stamp)
            if not messages:
                continue
            for framing, members in state.members.items():
                if len(messages) == 1:
                    frame = framing.frame_message(messages[0])
                else:
                    frame = b"".join([framing.frame_message(m) for m in messages])
                stats.frames_encoded += len(messages)
                stats.deliveries += len(members) * len(messages)
                stats.delivered_bytes += len(members) * len(frame)
                for transport in members.values():
                    try:
                        transport.write(frame)
                    except Exception:
                        write_failed(transport)

    # -- recovery ---------------------------------------------------------------------------

    def recover(self, channels: Iterable[str]) -> Coroutine[Any, Any, None]:
        """After the broker lost its connection: fan out what history holds beyond the last
        position each channel reached here, or tell its subscribers what is lost (`gap`).

        Every channel is held at once, before this returns (call it from the broker's
        `resubscribed` callback, before the next live message is read): the recoveries run
        one after the other, and a channel whose turn has not come yet must not move past
        what it missed with live messages (its history would then be read from there, and
        what it missed lost silently). Await the result to run them."""
        held = []
        for channel in channels:
            state = self._channels.get(channel)
            if state is None or state.epoch is None:
                continue
            state.hold += 1
            state.rereads += 1
            held.append((channel, state, Position(state.epoch, state.offset)))
        return self._recover(held)

    async def _recover(self, held: list[tuple[str, _Channel, Position]]) -> None:
        for index, (channel, state, since) in enumerate(held):
            try:
                await self._recover_one(channel, state, since)
            except BaseException:
                for later, later_state, _ in held[index + 1 :]:
                    later_state.rereads -= 1  # its read will not be sent
                    self._release(later, later_state)
                raise
            finally:
                self._release(channel, state)

    async def _recover_one(self, channel: str, state: _Channel, since: Position) -> None:
        delay = RECOVERY_RETRY_FIRST
        owed = True  # this recovery's read is still to be sent (counted in state.rereads)
        try:
            while True:
                if state.epoch == since.epoch and state.offset < since.offset:
                    since = Position(state.epoch, state.offset)  # lowered by a note meanwhile
                stamp = self._broker.continuity
                self._pending.pop(channel, None)  # the read brings them from history
                state.rereads -= 1
                owed = False
                try:
                    history = await self._broker.history(channel, since)
                    break
                except PushwireError as exc:
                    if stamp is None or stamp != self._broker.continuity:
                        # Lost again: the broker's next `resubscribed` recovers the channel,
                        # from the same position (it did not move while held).
                        log.warning("cannot recover %s after a broker outage: %s", channel, exc)
                        return
                    # Given up, the next live message would move the channel past what it
                    # missed (a Redis restarted with persistence answers LOADING a while).
                    log.warning("cannot recover %s, again in %g s: %s", channel, delay, exc)
                state.rereads += 1
                owed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECOVERY_RETRY_MAX)
        finally:
            if owed:
                state.rereads -= 1
        # An epoch change that lost nothing after the newest position known here of the
        # old epoch is no gap.
        if stamp != self._broker.continuity:
            stamp = None  # lost again during the read: the next recovery tells
        ended = self.ended(channel, since.epoch, history.position.epoch, stamp)
        last_lost = history.lost(since, ended)
        _note(state, history.position, stamp)
        if last_lost is not None:
            self._tell_gap(channel, since, last_lost)
        if not history.complete:
            first = history.position.offset + 1
            if history.messages:
                first = history.messages[0].offset
            _move(state, history.position.epoch, first - 1, stamp)
        for message in history.messages:
            self.deliver(message)

    def _release(self, channel: str, state: _Channel) -> None:
        """A hold taken by `recover` ends: what waited goes out."""
        state.hold -= 1
        if not state.hold and channel in self._pending:
            self.flush()

    def _tell_gap(self, channel: str, since: Position, last_lost: Position) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        gap = {
            "type": "gap",
            "channel": channel,
            "from": {"epoch": since.epoch, "offset": since.offset},
            "to": {"epoch": last_lost.epoch, "offset": last_lost.offset},
        }
        for framing, members in state.members.items():
            frame = framing.frame_control(gap)
            for transport in members.values():
                try:
                    transport.write(frame)
                except Exception:
                    write_failed(transport)
