"""Shared fixtures. Integration tests need a real Kafka broker: `memstream kafka up` (or .ci/run) starts one.

CI cannot pass by skipping: under ``CI=true`` a test that lacks its broker or Java fails. And no test can
stall a run: each has a time limit (pytest-timeout), `TIME_LIMIT_S` unless it sets its own
``@pytest.mark.timeout`` or the command line gives ``--timeout``."""

from __future__ import annotations

import os
import socket

import pytest

BOOTSTRAP = os.environ.get("MEMSTREAM_TEST_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('MEMSTREAM_KAFKA_PORT', '9092')}"

TIME_LIMIT_S = {"integration": 900, "other": 300}
"""Seconds a test may run: far above the slowest on a loaded 2-core machine (the SIGKILL fault test waits
up to 240 s for its stream, a unit test takes seconds), low enough that a hang fails its test, not CI."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("timeout") or config.getoption("timeout", None):
        return  # pytest-timeout not installed (it is in the dev extra), or --timeout says
    for item in items:
        if item.get_closest_marker("timeout") is None:
            kind = "integration" if item.get_closest_marker("integration") else "other"
            item.add_marker(pytest.mark.timeout(TIME_LIMIT_S[kind]))


def skip_or_fail(message: str) -> None:
    """Skip on a developer machine; fail in CI (CI=true), where whatever the test needs must be there."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_java() -> None:
    """A Java that runs Kafka 4 (17+), or skip (fail in CI)."""
    from memstream.deploy.kafka.process import KafkaStartError, java_executable

    try:
        java_executable()
    except KafkaStartError as exc:
        skip_or_fail(f"needs Java 17+ to run a Kafka broker: {exc}")


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
        skip_or_fail(f"no Kafka broker at {BOOTSTRAP}: run `memstream kafka up` first")
    return BOOTSTRAP
