"""Running a Lua script for many items in one round trip, through a `SCRIPT FLUSH`.

The publisher and presence send their scripts with EVALSHA, pipelined: a batch costs one
round trip. When Redis forgot a script (a `SCRIPT FLUSH`, or a restart between loading it
and running it), the calls that met NOSCRIPT are run again once the script is loaded again,
after the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

__all__ = ["run_batch"]

T = TypeVar("T")


async def run_batch(
    client: Redis,
    script: str,
    items: list[T],
    add: Callable[[Pipeline, T], object],
    finish: Callable[[T, object], None],
) -> list[T]:
    """Queue each item's command with `add(pipeline, item)`, in order, send them in one
    round trip, and give each answer (or error) to `finish(item, answer)`.

    Items whose answer was NOSCRIPT are run again, once, after loading `script` (the source
    of the script their commands run). Returns the items that met NOSCRIPT both times.

    Raises:
        redis.exceptions.ConnectionError: and the other `CONNECTION_ERRORS` (health.py).
    """
    for _ in range(2):
        pipe = client.pipeline(transaction=False)
        for item in items:
            add(pipe, item)
        results = await pipe.execute(raise_on_error=False)
        retry: list[T] = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, NoScriptError):
                retry.append(item)  # SCRIPT FLUSH: load it again, run these again
            else:
                finish(item, result)
        if not retry:
            return []
        await client.script_load(script)
        items = retry
    return items
