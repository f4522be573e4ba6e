"""Chaos runs with pushwire.js in Chromium: subscribers on websocket, sse, longpoll and
iframe through the fault proxy, each also a user sent direct messages, checked by the same
ledger as the Python client's (channel messages and the user's inbox alike).

The nodes say `heartbeat: 2` in their welcome here (`ping_interval`, default 20 s): an
iframe whose response was cut or reset fires no `load` in Chromium, and pushwire.js finds
that drop only by its pings, after two heartbeat periods without an envelope
(clients/js/src/transports/iframe.js): about 4 s here, 40 s with the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from tests.chaos.scenario import BROWSER_TRANSPORTS, Plan, Report, run
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
        direct=True,
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
        direct=True,
        extra=HEARTBEAT,
        settle=10.0,
    ),
}


# One run per plan serves both tests of that plan (channel and direct).
_reports: dict[str, Report] = {}


async def report_for(name: str, browser: Browser, directory: Path) -> Report:
    if name not in _reports:
        _reports[name] = await run(PLANS[name], directory, browser)
    return _reports[name]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PLANS))
async def test_pushwire_js_channel_messages_once_in_order(
    name: str, browser: Browser, tmp_path: Path
) -> None:
    report = await report_for(name, browser, tmp_path)
    violations = report.violations()
    assert not violations, "\n".join([report.summary(), *violations])
    for label, counts in report.channel.items():
        assert counts.received > 0, report.summary()
        if name == "switch":
            used = report.transports[label]
            assert len(used) == 2, f"{label} received over {used} only"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PLANS))
async def test_pushwire_js_direct_messages_once_in_order_or_in_an_exact_gap(
    name: str, browser: Browser, tmp_path: Path
) -> None:
    report = await report_for(name, browser, tmp_path)
    violations = report.violations(direct=True)
    assert not violations, "\n".join([report.summary(), *violations])
    for counts in report.direct.values():
        assert counts.received > 0, report.summary()
