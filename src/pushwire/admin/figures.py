"""The admin page's figures: what one process publishes to the stats channel each second.

Each process (each worker, each node of a Redis broker) publishes its own set of figures to
`STATS_CHANNEL` every `admin_interval` seconds, named by its `node`; the page adds the nodes
up. One set is one JSON object:

- `node`, `time`, `interval`: who sent it, when (seconds since the epoch), how often it comes;
- `connections`: TCP connections open here (`open`), accepted since start (`accepted`);
- `sessions`: sessions here by the transport of their connection (`none`: between
  connections);
- `totals`: counters since start: `published`, `deliveries`, `published_bytes`,
  `delivered_bytes`, `refusals`; `rates`: the same per second over the last interval;
- `channels`: the busiest `admin_max_channels` channels here, each with `channel`,
  `subscribers`, `users` (at most `admin_max_members` ids of signed-in members) and
  `more_users`; `channel_count`, `subscriptions`: channels with a subscriber here, and
  subscriptions.

The figures count the stats channel's own messages too (one a second per process, delivered
to each open admin page); the stats channel itself is not listed among the channels.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

import orjson

from ..auth.admin import STATS_CHANNEL
from ..clock import Timer
from ..config import Config
from ..core import Hub

__all__ = ["FIGURES", "StatsPublisher", "figures"]

logger = logging.getLogger("pushwire.admin")

#: The counters whose rates are published.
FIGURES: Final = ("published", "deliveries", "published_bytes", "delivered_bytes", "refusals")


def _totals(hub: Hub) -> dict[str, int]:
    stats = hub.stats
    return {
        "published": stats.published,
        "deliveries": stats.deliveries,
        "published_bytes": stats.published_bytes,
        "delivered_bytes": stats.delivered_bytes,
        "refusals": sum(hub.access.refusals.by_reason.values()),
    }


def figures(
    hub: Hub, config: Config, counters: Mapping[str, int], *, node: str, now: float
) -> dict[str, object]:
    """One set of figures of this process, without the rates (see the module docstring).
    `counters` are the `/api/stats` counters (the door's connections)."""
    by_transport: dict[str, int] = {}
    members: dict[str, tuple[int, set[str]]] = {}
    subscriptions = 0
    for session in list(hub.sessions.values()):
        transport = session.transport
        name = transport.name if transport is not None else "none"
        by_transport[name] = by_transport.get(name, 0) + 1
        for channel in session.channels:
            if channel == STATS_CHANNEL:
                continue
            subscriptions += 1
            count, users = members.get(channel, (0, set()))
            if session.user is not None:
                users.add(session.user)
            members[channel] = (count + 1, users)
    busiest = sorted(members.items(), key=lambda item: (-item[1][0], item[0]))
    listed = []
    for channel, (count, users) in busiest[: config.admin_max_channels]:
        shown = sorted(users)[: config.admin_max_members]
        listed.append(
            {
                "channel": channel,
                "subscribers": count,
                "users": shown,
                "more_users": len(users) - len(shown),
            }
        )
    return {
        "node": node,
        "time": now,
        "interval": config.admin_interval,
        "connections": {
            "open": counters.get("connections_open", 0),
            "accepted": counters.get("connections_accepted", 0),
        },
        "sessions": dict(sorted(by_transport.items())),
        "totals": _totals(hub),
        "channels": listed,
        "channel_count": len(members),
        "subscriptions": subscriptions,
    }


class StatsPublisher:
    """Publishes this process's figures to the stats channel every `admin_interval` seconds,
    from `start` to `stop`.

    Args:
        hub: what is counted, and where the figures are published.
        config: `admin_interval`, `admin_max_channels`, `admin_max_members`.
        counters: the `/api/stats` counters (the door's connections), read at each tick.
        node: the name of this process in the figures (default: host name and process id).

    Raises:
        ValueError: a setting out of its range (an interval or time-to-live not over 0).
    """

    def __init__(
        self,
        hub: Hub,
        config: Config,
        counters: Callable[[], Mapping[str, int]],
        *,
        node: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if config.admin_interval <= 0 or config.admin_token_ttl <= 0:
            raise ValueError("admin_interval and admin_token_ttl must be over 0 seconds")
        if config.admin_max_channels < 0 or config.admin_max_members < 0:
            raise ValueError("admin_max_channels and admin_max_members must be 0 or more")
        self.hub = hub
        self.config = config
        self.counters = counters
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self._wall = wall
        self._timer: Timer | None = None
        self._last: tuple[float, dict[str, int]] | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = self.hub.clock.call_later(self.config.admin_interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def snapshot(self) -> dict[str, object]:
        """This process's figures now, with the rates since the previous snapshot."""
        now = self.hub.clock.time()
        current = figures(self.hub, self.config, self.counters(), node=self.node, now=self._wall())
        totals = current["totals"]
        assert isinstance(totals, dict)
        rates: dict[str, float] = dict.fromkeys(FIGURES, 0.0)
        if self._last is not None:
            then, before = self._last
            elapsed = now - then
            if elapsed > 0:
                rates = {key: (totals[key] - before[key]) / elapsed for key in FIGURES}
        self._last = (now, dict(totals))
        current["rates"] = rates
        return current

    def _tick(self) -> None:
        self._timer = self.hub.clock.call_later(self.config.admin_interval, self._tick)
        try:
            data = orjson.dumps(self.snapshot()).decode()
        except Exception:  # a bug here must not stop the figures for good: log, try next tick
            logger.exception("admin figures failed")
            return
        self.hub.publish_nowait(STATS_CHANNEL, data, _published)


def _published(result: object) -> None:
    if isinstance(result, Exception):
        logger.debug("admin figures not published: %s", result)
