"""Polling with a deadline, for benchmarks waiting on other processes (there is no event to
await across processes). Tests have `tests.utils.wait_for`, which fails as an assertion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T | None]], *, timeout: float, interval: float, what: str
) -> T:
    """Poll `check` every `interval` s until it returns something truthy; TimeoutError after
    `timeout` s. Keep `interval` small against the durations being measured."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
