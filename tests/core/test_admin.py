"""Admin tokens and the stats channel's figures, without a socket (auth/admin.py,
admin/figures.py); the doors are driven in tests/integration/test_admin_doors.py."""

from __future__ import annotations

import json

import pytest

from pushwire import ConnectRequest, Forbidden, Hub
from pushwire.admin import StatsPublisher, figures
from pushwire.admin.figures import FIGURES
from pushwire.auth.admin import STATS_CHANNEL, AdminTokens, admin_grants
from pushwire.clock import ManualClock
from pushwire.config import Config
from pushwire.errors import TokenExpired, Unauthorized
from pushwire.transports.websocket.framing import RAW_FRAMING
from tests.helpers import RecordingTransport

KEY = "the admin unit tests' API key"


def test_an_admin_token_is_signed_with_the_key_and_expires() -> None:
    now = [1_000_000.0]
    tokens = AdminTokens(KEY, 60, wall=lambda: now[0])
    token, expires = tokens.issue()
    assert expires == 1_000_060 and KEY not in token
    assert tokens.check(token) == expires
    assert tokens.expires(token) == expires
    assert tokens.expires("eyJ.a.b") is None and tokens.expires(None) is None  # not one
    with pytest.raises(Unauthorized, match="invalid admin token"):
        AdminTokens("another key", 60, wall=lambda: now[0]).check(token)
    forged = token.replace(".", ".9", 1)  # a later expiry under the old signature
    with pytest.raises(Unauthorized, match="invalid admin token"):
        tokens.check(forged)
    now[0] += 60
    with pytest.raises(TokenExpired):
        tokens.check(token)


def test_only_an_admin_credential_grants_the_stats_channel() -> None:
    assert admin_grants(frozenset({"a", STATS_CHANNEL}), False) == {"a"}
    assert admin_grants(frozenset({"a"}), True) == {"a", STATS_CHANNEL}


def test_no_admin_tokens_unless_the_page_is_on_with_a_key() -> None:
    assert AdminTokens.from_config(Config(api_key=KEY)) is None
    assert AdminTokens.from_config(Config(admin=True)) is None
    assert AdminTokens.from_config(Config(admin=True, api_key=KEY)) is not None


async def test_an_admin_session_may_subscribe_and_nobody_else() -> None:
    hub = Hub(config=Config(admin=True, api_key=KEY))
    assert hub.access.admin is not None
    token, _ = hub.access.admin.issue()
    admin = await hub.access.connect(ConnectRequest("/pushwire", "websocket", [], {}, token=token))
    assert admin.user is None and STATS_CHANNEL in admin.grants
    claimed = await hub.access.connect(ConnectRequest("/pushwire", "websocket", [], {}, user="x"))
    session = hub.lifecycle.open(RecordingTransport(RAW_FRAMING))
    with pytest.raises(Forbidden, match="admin token is needed"):
        hub.access.check_subscribe(session, STATS_CHANNEL)
    assert STATS_CHANNEL not in claimed.grants
    session.grants = admin.grants
    assert hub.access.check_subscribe(session, STATS_CHANNEL)[0] == STATS_CHANNEL
    with pytest.raises(Forbidden, match="only the server publishes"):
        hub.access.check_publish(session, STATS_CHANNEL)
    with pytest.raises(Forbidden, match="only the server publishes"):
        hub.access.check_publish(None, STATS_CHANNEL)


async def test_the_figures_count_clients_channels_and_rates() -> None:
    clock = ManualClock(100.0)
    config = Config(admin=True, api_key=KEY, admin_max_channels=1, admin_max_members=1)
    hub = Hub(config=config, clock=clock)
    for user, channel in (("ann", "news"), ("bob", "news"), ("cid", "chat")):
        session = hub.lifecycle.open(RecordingTransport(RAW_FRAMING), user=user)
        hub.channels.subscribe(session, channel)
    shown = figures(hub, config, {"connections_open": 4}, node="n1", now=5.0)
    assert shown["sessions"] == {"recording": 3}
    assert shown["connections"] == {"open": 4, "accepted": 0}
    assert shown["channels"] == [
        {"channel": "news", "subscribers": 2, "users": ["ann"], "more_users": 1}
    ]
    assert shown["channel_count"] == 2 and shown["subscriptions"] == 3
    publisher = StatsPublisher(hub, config, lambda: {}, node="n1", wall=lambda: 5.0)
    assert publisher.snapshot()["rates"] == dict.fromkeys(FIGURES, 0.0)  # no interval yet
    hub.publish_nowait("news", "x")
    hub.publish_nowait("news", "y")
    clock.advance(2.0)
    rates = publisher.snapshot()["rates"]
    assert isinstance(rates, dict) and rates["published"] == 1.0
    json.dumps(publisher.snapshot())  # what goes out is JSON


@pytest.mark.parametrize(
    "setting",
    [{"admin_interval": 0.0}, {"admin_token_ttl": -1.0}, {"admin_max_channels": -1}],
)
def test_settings_out_of_range_are_refused(setting: dict[str, float]) -> None:
    config = Config(admin=True, api_key=KEY, **setting)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be"):
        StatsPublisher(Hub(config=config), config, dict)
