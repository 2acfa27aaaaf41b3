"""Wait for a condition with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    deadline_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``until(result)`` holds; raise with the last result if not."""
    end = time.monotonic() + deadline_s
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met within {deadline_s}s; last: {result!r}")
        await asyncio.sleep(interval_s)
