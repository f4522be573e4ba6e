"""Chaos runs with pushwire.js in Chromium: subscribers on websocket, sse, longpoll and
iframe through the fault proxy, checked by the same ledger as the Python client's.

The nodes say `heartbeat: 2` in their welcome here (`ping_interval`, default 20 s): an
iframe whose response was cut or reset fires no `load` in Chromium, and pushwire.js finds
that drop only by its pings, after two heartbeat periods without an envelope
(clients/js/src/transports/iframe.js): about 4 s here, 40 s with the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from tests.chaos.scenario import BROWSER_TRANSPORTS, Plan, run
from tests.chaos.schedule import seed_for

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_redis")]

HEARTBEAT: Final = ("--set", "ping_interval=2")
PLANS: Final = {
    "mixed": Plan(
        "mixed",
        ("reset", "truncate", "node_down", "kill"),
        seed=seed_for(1420),
        length=6.5,
        every=2.0,
        rate=60.0,
        python=(),
        browser=tuple((t,) for t in BROWSER_TRANSPORTS),
        extra=HEARTBEAT,
        settle=10.0,
    ),
    # Each page starts on WebSocket, which the proxy then refuses: it falls back.
    "switch": Plan(
        "switch",
        ("switch",),
        seed=seed_for(1421),
        length=4.5,
        every=2.0,
        rate=60.0,
        python=(),
        browser=(("websocket", "sse"), ("websocket", "longpoll"), ("websocket", "iframe")),
        extra=HEARTBEAT,
        settle=10.0,
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PLANS))
async def test_pushwire_js_channel_messages_once_in_order(
    name: str, browser: Browser, tmp_path: Path
) -> None:
    report = await run(PLANS[name], tmp_path, browser)
    violations = report.violations()
    assert not violations, "\n".join([report.summary(), *violations])
    for label, counts in report.channel.items():
        assert counts.received > 0, report.summary()
        if name == "switch":
            used = report.transports[label]
            assert len(used) == 2, f"{label} received over {used} only"
