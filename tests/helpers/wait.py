"""Waiting in tests: poll a condition until it holds, with a deadline that names what was
awaited. One place for what several helpers used to write again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
POLL = 0.02  # seconds between polls
WAIT = 10.0  # seconds, when a caller names no timeout


async def until(predicate: Callable[[], T], timeout: float = WAIT,
                what: str | Callable[[], str] = "condition", interval: float = POLL) -> T:
    """Poll `predicate()` until it returns something truthy (returned); TimeoutError naming
    `what` after `timeout` seconds (a callable `what` is asked then, so it can show state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {described}")
        await asyncio.sleep(interval)


async def until_async(check: Callable[[], Awaitable[Any]], timeout: float,
                      what: str = "condition", interval: float = 0.2) -> Any:
    """Like `until` for an async check that may raise while it is not yet true; the last
    exception is named in the failure."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
        except Exception as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not within {timeout:.0f} s (last: {last!r})")


def until_sync(predicate: Callable[[], T], timeout: float, what: str = "condition",
               interval: float = 0.1) -> T:
    """`until` for code without an event loop (it blocks the thread between polls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
