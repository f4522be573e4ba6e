"""Chaos runs with pushwire.js in Chromium: subscribers on websocket, sse, longpoll and
iframe through the fault proxy, checked by the same ledger as the Python client's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.chaos.scenario import BROWSER_TRANSPORTS, Plan, run
from tests.chaos.schedule import seed_for

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_redis")]

BROWSER: tuple[tuple[str, ...], ...] = tuple((t,) for t in BROWSER_TRANSPORTS)


@pytest.mark.timeout(120)
async def test_pushwire_js_channel_messages_survive_resets_torn_answers_and_dead_nodes(
    browser: Browser, tmp_path: Path
) -> None:
    plan = Plan(
        "mixed",
        ("reset", "truncate", "node_down", "kill"),
        seed=seed_for(1420),
        length=6.5,
        every=2.0,
        rate=60.0,
        python=(),
        browser=BROWSER,
        settle=15.0,
    )
    report = await run(plan, tmp_path, browser)
    violations = report.violations()
    assert not violations, "\n".join([report.summary(), *violations])
    for counts in report.channel.values():
        assert counts.received > 0, report.summary()


@pytest.mark.timeout(120)
async def test_pushwire_js_switches_transport_when_websocket_is_refused(
    browser: Browser, tmp_path: Path
) -> None:
    plan = Plan(
        "switch",
        ("switch",),
        seed=seed_for(1421),
        length=4.5,
        every=2.0,
        rate=60.0,
        python=(),
        browser=(("websocket", "sse"), ("websocket", "longpoll"), ("websocket", "iframe")),
        settle=15.0,
    )
    report = await run(plan, tmp_path, browser)
    violations = report.violations()
    assert not violations, "\n".join([report.summary(), *violations])
    for label, used in report.transports.items():
        assert len(used) == 2, f"{label} received over {used} only"
