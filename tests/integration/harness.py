"""Run real worker processes against the real broker, each test in its own topic namespace."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from memstream.deploy.workers import Deployment, free_port  # noqa: F401 - re-exported for the tests
from memstream.streams.settings import KafkaSettings

CREATED: list[Namespace] = []
"""Namespaces made by the running test; tests/integration/conftest.py deletes their topics afterwards."""


class Namespace(Deployment):
    """A deployment whose app ids read as tests' (see memstream.deploy.workers.Deployment)."""

    def __init__(self, bootstrap: str, root: Path, partitions: int = 4, **env: str) -> None:
        super().__init__(bootstrap, root, partitions, **env)
        self.app_id = self.env["MEMSTREAM_WORKER__APP_ID"] = f"memstream-test-{self.prefix[1:-1]}"
        CREATED.append(self)


async def collect(
    kafka: KafkaSettings, topic: str, done: Callable[[list[bytes]], bool], timeout: float = 60.0
) -> list[bytes]:
    """Read `topic` from the beginning until done(values) or the timeout; return all values read."""
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(values):
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batch.values():
                values.extend(m.value for m in messages)
        return values
    finally:
        await consumer.stop()
