"""An agent's crash is its worker's (agents/faust_compat.py): the app crashes, which stops the worker with a
non-zero exit code, and no offset is committed after it. Without a broker: the app is never started. The
exit code itself is checked on a real worker (tests/integration/test_store_faults.py)."""

from __future__ import annotations

import logging

from faust.types import TP

from memstream.agents.faust_compat import App, Consumer


class _Agent:
    name = "memstream.index"


async def test_an_agent_error_crashes_the_app_and_freezes_the_offsets(caplog):
    app = App("crash-test", broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False)
    consumer = app.consumer
    assert isinstance(consumer, Consumer) and not consumer.offsets_frozen
    error = KeyError("a bug")
    with caplog.at_level(logging.CRITICAL, logger="memstream.agents.faust_compat"):
        await app._on_agent_error(_Agent(), error)
    assert app.crashed and app.crash_reason is error  # mode stops the worker and re-raises it: exit code 1
    assert consumer.offsets_frozen
    assert "agent memstream.index crashed (KeyError: 'a bug'): stopping the worker" in caplog.text
    # every commit (timer, rebalance, shutdown) goes through here: nothing is committed after the crash
    assert await consumer._commit_offsets({TP("t.episodes", 0): 42}) is False
