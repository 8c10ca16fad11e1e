"""Scenarios that exercise the harness itself: results, crashes and hangs in the child."""

from __future__ import annotations

import asyncio
import os
from typing import Any


async def echo(*args: Any) -> list[Any]:
    return list(args)


async def abort() -> None:
    """What a Rust panic in the SDK looks like from outside: the process dies at once."""
    os.abort()


async def hang() -> None:
    await asyncio.Event().wait()  # never set: the runner's limit must end it
