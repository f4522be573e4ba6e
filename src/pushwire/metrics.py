"""Prometheus metrics (`GET /metrics`), collected from the counters pushwire keeps anyway.

Nothing is incremented per message for Prometheus: the hub, the refusal log, the broker and
the server keep plain integers (an add where the event happens, once per fan-out batch for
deliveries), and `PushwireCollector` reads them when Prometheus scrapes. The few gauges that
need a pass (subscriptions, sessions by transport) walk the channels or sessions then, once
per scrape. docs/operations.md lists every metric.

Each process answers for itself: with `--workers N`, a scrape reaches one worker (the kernel
spreads connections), so scrape each worker on its own port, or sum over `instance`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .broker.base import BrokerHealth
from .core import Hub

__all__ = ["CONTENT_TYPE", "STATS_SHOWN", "Metrics", "PushwireCollector"]

#: The text exposition format, version 0.0.4.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: The `/api/stats` counters exported under a name of their own here; any other key of
#: `/api/stats` (a memory budget, say) is exported as the gauge `pushwire_stats_<key>`.
STATS_SHOWN: Final = frozenset(
    {
        "connections_accepted",
        "connections_open",
        "sessions",
        "published",
        "frames_encoded",
        "deliveries",
    }
)
_NAME: Final = re.compile(r"[^a-zA-Z0-9_]")


class PushwireCollector(Collector):
    """Reads the hub's, the server's and the broker's counters at scrape time.

    Args:
        hub: sessions, channels, the hub's counters and the refusal log.
        stats: the `/api/stats` counters (the server's connections among them), called once
            per scrape.
    """

    def __init__(self, hub: Hub, stats: Callable[[], Mapping[str, int | float]]) -> None:
        self.hub = hub
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        counters = hub.stats
        stats = self.stats()
        yield _counter(
            "pushwire_connections_accepted",
            "TCP connections accepted since start (HTTP, WebSocket, raw TCP)",
            stats.get("connections_accepted", 0),
        )
        yield _gauge(
            "pushwire_connections_open", "TCP connections open now", stats["connections_open"]
        )
        by_transport: dict[str, int] = {}
        detached = 0
        for session in list(hub.sessions.values()):
            transport = session.transport
            if transport is None:
                detached += 1
            else:
                by_transport[transport.name] = by_transport.get(transport.name, 0) + 1
        sessions = GaugeMetricFamily(
            "pushwire_sessions",
            "Sessions here, by the transport of their connection ('none': between connections, "
            "within session_grace)",
            labels=["transport"],
        )
        for name, count in sorted(by_transport.items()):
            sessions.add_metric([name], count)
        sessions.add_metric(["none"], detached)
        yield sessions
        channels, subscriptions = hub.channels.counts()
        yield _gauge("pushwire_channels", "Channels with a subscriber here", channels)
        yield _gauge(
            "pushwire_subscriptions", "Channel subscriptions of the sessions here", subscriptions
        )
        yield _counter(
            "pushwire_messages_published", "Channel messages published here", counters.published
        )
        yield _counter(
            "pushwire_published_bytes",
            "Bytes of data of the channel messages published here",
            counters.published_bytes,
        )
        yield _counter(
            "pushwire_deliveries",
            "Channel messages written to a subscriber's connection (one per subscriber)",
            counters.deliveries,
        )
        yield _counter(
            "pushwire_delivered_bytes",
            "Bytes of the frames written to subscribers by fan-out",
            counters.delivered_bytes,
        )
        yield _counter(
            "pushwire_frames_encoded",
            "Channel messages framed (once per framing per message)",
            counters.frames_encoded,
        )
        closes = CounterMetricFamily(
            "pushwire_connection_closes",
            "Connections of sessions that ended, by close code (4001: slow consumer)",
            labels=["code"],
        )
        for code, count in sorted(counters.closes.items()):
            closes.add_metric([str(code)], count)
        yield closes
        yield _counter(
            "pushwire_slow_consumer_closes",
            "Connections closed as slow consumers (close code 4001)",
            counters.closes.get(4001, 0),
        )
        refusals = CounterMetricFamily(
            "pushwire_refusals",
            "Clients refused (connect, subscribe, publish, the API key), by reason",
            labels=["reason"],
        )
        for reason, count in sorted(hub.access.refusals.by_reason.items()):
            refusals.add_metric([reason], count)
        yield refusals
        yield from _broker(hub)
        for key, value in sorted(stats.items()):
            if key not in STATS_SHOWN and isinstance(value, int | float):
                yield _gauge("pushwire_stats_" + _NAME.sub("_", key), f"/api/stats {key}", value)


def _broker(hub: Hub) -> Iterator[Metric]:
    broker = hub.broker
    if not isinstance(broker, BrokerHealth):
        yield _gauge("pushwire_broker_up", "1 while the broker works (memory: always)", 1)
        return
    health = broker.health_stats()
    yield _gauge("pushwire_broker_up", "1 while every connection to the broker works", health["up"])
    yield _counter(
        "pushwire_broker_reconnects", "Broker outages ended since start", health["reconnects"]
    )
    yield SummaryMetricFamily(
        "pushwire_broker_round_trip_seconds",
        "Round trips to the broker (one per batch of publishes)",
        count_value=int(health["round_trips"]),
        sum_value=health["round_trip_seconds"],
    )
    yield _gauge("pushwire_broker_pending", "Publishes queued for the broker", health["pending"])


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    """One app's registry: `PushwireCollector` and the process's own (CPU, memory, files)."""

    def __init__(self, hub: Hub, stats: Callable[[], Mapping[str, int | float]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PushwireCollector(hub, stats))
        self.registry.register(ProcessCollector(registry=None))

    def exposition(self) -> bytes:
        """The text exposition of every metric now."""
        return generate_latest(self.registry)
