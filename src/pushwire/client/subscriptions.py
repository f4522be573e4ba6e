"""Subscriptions and positions: the channels a client is subscribed to, the last position
(epoch, offset) it saw in each, the `subscribe` envelope that resumes from there, and which
channel messages are new. No I/O: the client feeds it what arrives."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import Gap
from .transports.base import Envelope

__all__ = ["Channel", "Subscriptions"]


@dataclass(slots=True)
class Channel:
    """One subscribed channel: with presence or not, and the last position seen (no epoch
    until the server said where the subscription began)."""

    presence: bool
    epoch: str | None = None
    offset: int = 0
    #: The channel's last messages to get from history on the first subscription.
    rewind: int = 0


class Subscriptions:
    """The channels subscribed to, each with its position, in subscription order."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self._channels

    def get(self, channel: str) -> Channel | None:
        """The subscription to `channel`, if there is one."""
        return self._channels.get(channel)

    def channels(self) -> list[str]:
        """The channels subscribed to, in subscription order."""
        return list(self._channels)

    def add(self, channel: str, presence: bool, rewind: int = 0) -> Channel | None:
        """Subscribe to `channel` from here on (its last `rewind` messages first), or change
        its `presence`; the new `Channel` when it was not subscribed yet, else None."""
        state = self._channels.get(channel)
        if state is not None:
            state.presence = presence
            return None
        state = self._channels[channel] = Channel(presence, rewind=rewind)
        return state

    def remove(self, channel: str, state: Channel | None = None) -> None:
        """Forget `channel` (with `state`: only if it is still that subscription)."""
        if state is None or self._channels.get(channel) is state:
            self._channels.pop(channel, None)

    def envelope(self, channel: str) -> Envelope:
        """The `subscribe` for `channel`, resuming after the last position seen, if any."""
        state = self._channels[channel]
        envelope: Envelope = {"type": "subscribe", "channel": channel, "presence": state.presence}
        if state.epoch is not None:
            envelope["since"] = {"epoch": state.epoch, "offset": state.offset}
        elif state.rewind:
            envelope["rewind"] = state.rewind
        return envelope

    def envelopes(self) -> Iterator[Envelope]:
        """A `subscribe` per channel: what a new connection sends to carry on."""
        for channel in self._channels:
            yield self.envelope(channel)

    def subscribed(self, envelope: Envelope) -> None:
        """The server's `subscribed`: where a first subscription begins (with `rewind`, that
        many messages before it). A resumed one keeps its own position (the messages after it
        are on their way)."""
        state = self._channels.get(envelope.get("channel", ""))
        if state is not None and state.epoch is None:
            state.epoch, state.offset = envelope["epoch"], max(0, envelope["offset"] - state.rewind)

    def fresh(self, channel: str, epoch: str, offset: int) -> bool:
        """Whether a message at (epoch, offset) of `channel` is new; if so it is the last
        position seen. False for a replay after a resumption (seen already). Messages of a
        channel not subscribed to (any more) are new: they are not tracked."""
        state = self._channels.get(channel)
        if state is None:
            return True
        if state.epoch == epoch and offset <= state.offset:
            return False
        state.epoch, state.offset = epoch, offset
        return True

    def skip(self, envelope: Envelope) -> Gap | None:
        """The server's `gap`: history lost messages; the position moves past them. Told
        from the last position seen: a node recovering a channel for all its subscribers
        after a broker outage starts the gap where the channel stood there, and a client
        that re-subscribed meanwhile may be further already (None: it has passed `to`)."""
        channel, start, end = envelope["channel"], envelope["from"], envelope["to"]
        state = self._channels.get(channel)
        if state is not None:
            if state.epoch == end["epoch"] and state.offset >= end["offset"]:
                return None
            if state.epoch == end["epoch"] or (
                state.epoch == start["epoch"] and state.offset > start["offset"]
            ):
                start = {"epoch": state.epoch, "offset": state.offset}
            state.epoch, state.offset = end["epoch"], end["offset"]
        return Gap(channel, start["epoch"], start["offset"], end["epoch"], end["offset"])
