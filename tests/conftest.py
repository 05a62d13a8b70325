"""Shared fixtures. Integration tests need a real Kafka broker: `memstream kafka up` (or .ci/run) starts one."""

from __future__ import annotations

import os
import socket

import pytest

BOOTSTRAP = os.environ.get("MEMSTREAM_TEST_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('MEMSTREAM_KAFKA_PORT', '9092')}"


def _reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker's address; fails (never skips) in CI when no broker answers."""
    if not _reachable(BOOTSTRAP):
        message = f"no Kafka broker at {BOOTSTRAP}: run `memstream kafka up` first"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return BOOTSTRAP
