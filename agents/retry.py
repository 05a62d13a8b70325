"""Retry a store write with exponential backoff until it succeeds: a stage never moves past unwritten data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

PERMANENT = (ValueError, TypeError)
"""Errors that retrying cannot fix (bad data): they propagate at once to the caller."""


async def until_done(
    operation: Callable[[], Awaitable[T]], what: str, *, first_delay: float = 0.2, max_delay: float = 10.0
) -> T:
    """Await ``operation()`` until it succeeds, sleeping 0.2 s, 0.4 s … (at most ``max_delay``) between tries."""
    delay = first_delay
    attempt = 1
    while True:
        try:
            result = await operation()
        except PERMANENT:
            raise
        except Exception as exc:
            log.warning(
                "%s failed (attempt %d: %s: %s); retrying in %.1fs", what, attempt, type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            attempt += 1
            continue
        if attempt > 1:
            log.info("%s succeeded after %d attempts", what, attempt)
        return result
