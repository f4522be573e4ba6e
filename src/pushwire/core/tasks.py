"""What the core runs without waiting: the app's handlers and the broker's coroutines.

The core's parts are called synchronously (a transport reports a close, the broker hands over
a message); what they start that must be awaited runs as a background task, whose failure is
logged rather than lost.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import PushwireError

__all__ = ["BackgroundTasks", "log_failure", "maybe_await", "settling"]

T = TypeVar("T")

log = logging.getLogger("pushwire.hub")


class BackgroundTasks:
    """The tasks the core started and nobody awaits; kept referenced until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def run(self, result: object) -> None:
        """Run a handler's or broker's coroutine in the background, logging its failure
        (a result that is not awaitable: the handler was synchronous, nothing to run)."""
        if not inspect.isawaitable(result):
            return
        task = asyncio.ensure_future(result)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())


def log_failure(future: asyncio.Future[None]) -> None:
    """Done callback of a broker subscription (a channel, a user): log why it failed."""
    if not future.cancelled() and future.exception() is not None:
        log.error("broker subscription failed", exc_info=future.exception())


async def maybe_await(value: Any) -> Any:
    """What an app's handler returned, awaited when it is awaitable (handlers may be either)."""
    return await value if inspect.isawaitable(value) else value


def settling(future: asyncio.Future[T]) -> Callable[[T | PushwireError], None]:
    """A broker's `done` callback that settles `future` with what it reports: the result, or
    the error raised by awaiting it (a future already settled or cancelled stays as it is)."""

    def done(result: T | PushwireError) -> None:
        if future.done():
            return
        if isinstance(result, PushwireError):
            future.set_exception(result)
        else:
            future.set_result(result)

    return done
