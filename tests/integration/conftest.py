"""Integration tests leave the broker as they found it: each test's topics are deleted after it."""

from __future__ import annotations

import pytest

from tests.conftest import _reachable
from tests.integration import harness


@pytest.fixture(autouse=True)
async def _delete_test_topics():
    yield
    namespaces, harness.CREATED[:] = list(harness.CREATED), []
    for ns in namespaces:
        ns.stop_workers()
        if _reachable(ns.kafka.bootstrap):  # a test's private broker is gone already, and its topics with it
            await ns.delete_topics()
