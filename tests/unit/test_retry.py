"""until_done: transient failures are retried with backoff, bad data is not."""

from __future__ import annotations

import pytest

from memstream.agents.retry import until_done


async def test_transient_failures_are_retried_until_success():
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("store down")
        return "written"

    assert await until_done(flaky, "write", first_delay=0.001) == "written"
    assert len(calls) == 3


async def test_bad_data_propagates_at_once():
    calls = []

    async def bad() -> None:
        calls.append(1)
        raise ValueError("vector has 3 dimensions, expected 384")

    with pytest.raises(ValueError):
        await until_done(bad, "write", first_delay=0.001)
    assert len(calls) == 1
