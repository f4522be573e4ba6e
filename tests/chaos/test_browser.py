"""Chaos runs with pushwire.js in Chromium: subscribers on websocket, sse, longpoll and
iframe through the fault proxy, checked by the same ledger as the Python client's.

The nodes send heartbeats every 2 s here (default 20 s): an iframe whose response was cut
fires no `load` in Chromium, and pushwire.js finds that drop by its pings, after two
heartbeat periods without an envelope (clients/js/src/transports/iframe.js).
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

HEARTBEAT: Final = ("--set", "heartbeat_interval=2")
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
IFRAME_STALLS: Final = (
    "found by the chaos suite, not one of issue 14's problems: pushwire.js on the iframe "
    "transport misses a reset or torn response of its stream (Chromium fires no load) and "
    "did not come back within 10 s although heartbeats were every 2 s (with the default 20 s "
    "heartbeat it came back after about 31 s and recovered everything)"
)

# One run per plan serves the tests of its cells.
_reports: dict[str, Report] = {}


async def report_for(name: str, browser: Browser, directory: Path) -> Report:
    if name not in _reports:
        _reports[name] = await run(PLANS[name], directory, browser)
    return _reports[name]


def assert_holds(report: Report, iframe: bool) -> None:
    labels = [label for label in report.channel if ("iframe" in label) == iframe]
    violations = [v for label in labels for v in report.channel[label].violations]
    assert not violations, "\n".join([report.summary(), *violations])
    for label in labels:
        assert report.channel[label].received > 0, report.summary()
        if report.plan.label == "switch":
            used = report.transports[label]
            assert len(used) == 2, f"{label} received over {used} only"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PLANS))
async def test_pushwire_js_channel_messages_once_in_order(
    name: str, browser: Browser, tmp_path: Path
) -> None:
    """websocket, sse and longpoll (and the switches to sse and longpoll)."""
    assert_holds(await report_for(name, browser, tmp_path), iframe=False)


@pytest.mark.timeout(120)
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=IFRAME_STALLS)
@pytest.mark.parametrize("name", list(PLANS))
async def test_pushwire_js_iframe_channel_messages_once_in_order(
    name: str, browser: Browser, tmp_path: Path
) -> None:
    assert_holds(await report_for(name, browser, tmp_path), iframe=True)
