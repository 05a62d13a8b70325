"""until_done: transient failures are retried with backoff; bad data is refused at once (Refused, for the stage
to dead-letter); a bug propagates as it is (the agent crashes)."""

from __future__ import annotations

import pytest

from memstream.agents.retry import Refused, until_done


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

    with pytest.raises(Refused) as refused:
        await until_done(bad, "writing 3 events", first_delay=0.001)
    assert len(calls) == 1
    assert isinstance(refused.value.cause, ValueError)
    assert str(refused.value) == (
        "writing 3 events failed for good: ValueError: vector has 3 dimensions, expected 384"
    )  # the dead letter's reason: what, the error's type and message


@pytest.mark.parametrize("bug", [AssertionError("invariant broken"), AttributeError("'NoneType' has no 'x'")])
async def test_a_bug_propagates_at_once_as_it_is(bug):
    calls = []

    async def buggy() -> None:
        calls.append(1)
        raise bug

    with pytest.raises(type(bug)) as raised:
        await until_done(buggy, "write", first_delay=0.001)
    assert raised.value is bug and len(calls) == 1
