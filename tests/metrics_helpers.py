"""Reading a test server's `/metrics` as Prometheus would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import ServerProcess

WAIT = 20.0


async def scrape(server: ServerProcess, key: str | None = None) -> dict[str, float]:
    """`/metrics` parsed by prometheus_client's own parser: sample name{labels} -> value."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(server.url("/metrics"), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    """Await until `check()` (sync or async) is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)
