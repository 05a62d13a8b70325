"""Retry a store write with exponential backoff until it succeeds: a stage never moves past unwritten data.

What a write can raise falls in three classes:

* transient (anything not below: a timeout, a 5xx, a connection dropped mid-write, a store that will not
  open): retried forever, with backoff; writes are idempotent upserts, so a batch written in part is simply
  written again;
* permanent (:data:`PERMANENT`: bad data, e.g. a vector of the wrong size): retrying cannot fix it, so the
  write is refused at once (:class:`Refused`) and the stage dead-letters the records it was writing;
* a bug (:data:`BUGS`): neither retried (it would fail forever, a dead stage in a live worker) nor
  dead-lettered (that would hide it): it propagates, the agent crashes, and the worker exits non-zero so an
  orchestrator restarts it (`agents.faust_compat.App._on_agent_error`), from the last committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

PERMANENT = (ValueError, TypeError)
"""Errors that retrying cannot fix (bad data): the write is refused (:class:`Refused`)."""

BUGS = (AssertionError, AttributeError, NameError, NotImplementedError)
"""Programming errors: they propagate as they are, and crash the agent."""


class Refused(Exception):
    """A write failed with a permanent error (one of :data:`PERMANENT`, its ``cause``): the caller
    dead-letters what it was writing, with ``str(self)`` (what, error type, message) as the reason."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what} failed for good: {type(cause).__name__}: {cause}")
        self.what = what
        self.cause = cause


async def until_done(
    operation: Callable[[], Awaitable[T]], what: str, *, first_delay: float = 0.2, max_delay: float = 10.0
) -> T:
    """Await ``operation()`` until it succeeds, sleeping 0.2 s, 0.4 s … (at most ``max_delay``) between tries.

    Raises :class:`Refused` on a permanent error and lets a bug (:data:`BUGS`) through, both at once."""
    delay = first_delay
    attempt = 1
    while True:
        try:
            result = await operation()
        except BUGS:
            raise
        except PERMANENT as exc:
            log.error("%s failed with a permanent error (%s: %s): not retried", what, type(exc).__name__, exc)
            raise Refused(what, exc) from exc
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
