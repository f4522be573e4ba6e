"""What arrives from Redis pub/sub, turned into the hub's callbacks.

A subscribed channel's pub/sub name carries its messages and its presence changes; a user's
carries the direct messages to it. `Inbound` parses each payload and hands it to the callback
the hub attached, and tells the hub which channels to recover after a lost subscription.

Guaranteed: a malformed payload is logged and dropped, and a failing callback is logged;
neither ever stops the reader that called in. Nothing is passed on before a callback is
attached, nor after the broker closed (`detach`).
"""

from __future__ import annotations

import logging

from ..base import DeliverCallback, DirectDeliverCallback, ResubscribedCallback
from .layout import parse_message
from .presence import RedisPresence

__all__ = ["Inbound"]

log = logging.getLogger("pushwire.broker.redis")


class Inbound:
    """The hub's callbacks for what one broker receives.

    Args:
        presence: where a channel's presence changes go (its `deliver` is the hub's).
    """

    def __init__(self, presence: RedisPresence) -> None:
        self._presence = presence
        self.deliver: DeliverCallback | None = None
        self.deliver_direct: DirectDeliverCallback | None = None
        self.on_resubscribed: ResubscribedCallback | None = None

    def detach(self) -> None:
        """Pass nothing on from now on (the broker closed)."""
        self.deliver = None
        self.deliver_direct = None

    def receive(self, channel: str, payload: bytes) -> None:
        """A payload on a subscribed channel's pub/sub name: a message or a presence change."""
        deliver = self.deliver
        if deliver is None:
            return  # closed, or not attached yet
        if payload[:1] == b"!":
            return self._presence.receive(channel, payload)
        try:
            message = parse_message(channel, payload)
        except ValueError:
            log.warning("malformed message on %r ignored: %r", channel, payload[:100])
            return
        try:
            deliver(message)
        except Exception:
            log.exception("message callback failed")

    def receive_direct(self, user: str, payload: bytes) -> None:
        """A payload on `user`'s pub/sub name: a direct message to it."""
        deliver = self.deliver_direct
        if deliver is None:
            return
        try:
            message = parse_message(user, payload)
        except ValueError:
            log.warning("malformed direct message to %r ignored: %r", user, payload[:100])
            return
        try:
            deliver(user, message)
        except Exception:
            log.exception("direct message callback failed")

    def resubscribed(self, channels: frozenset[str]) -> None:
        """The subscription connection is back: `channels` may have missed messages."""
        callback = self.on_resubscribed
        if callback is not None:
            try:
                callback(channels)
            except Exception:
                log.exception("on_resubscribed callback failed")
