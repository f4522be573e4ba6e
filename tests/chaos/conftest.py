"""The chaos runs need redis-server (and Chromium for pushwire.js): skipped without them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_ARGS
from tests.redis_helpers import REDIS_SERVER

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture
def needs_redis() -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium through Playwright's async API, in the test's own event loop (the
    proxy and the browser's clients share it). Skips when either is missing."""
    async_api = pytest.importorskip("playwright.async_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    async with async_api.async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()
