"""The worker's seek to the committed offsets (agents.faust_compat) on the real broker: a partition the group
has not committed yet goes back to its beginning, so records Faust dropped during a rebalance before the
group's first commit are fetched again instead of skipped."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from memstream.agents.faust_compat import Consumer, ConsumerThread, seek_to_committed_or_beginning
from tests.integration.harness import Namespace

pytestmark = pytest.mark.integration


async def _read_all(consumer: AIOKafkaConsumer, want: int) -> dict[int, list[int]]:
    """Offsets read per partition until `want` records were read (or 20 empty polls)."""
    got: dict[int, list[int]] = {}
    empty = 0
    while sum(map(len, got.values())) < want and empty < 20:
        batch = await consumer.getmany(timeout_ms=500)
        empty = 0 if batch else empty + 1
        for tp, records in batch.items():
            got.setdefault(tp.partition, []).extend(r.offset for r in records)
    return got


async def test_uncommitted_partitions_go_back_to_their_beginning(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path, partitions=2)
    await ns.create_topics()
    topic = ns.kafka.topics.interactions
    fresh, committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = AIOKafkaProducer(**ns.kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        for tp in (fresh, committed):
            for i in range(10):
                await producer.send_and_wait(topic, f"{tp.partition}-{i}".encode(), partition=tp.partition)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        **ns.kafka.client_kwargs(), group_id=ns.app_id, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([fresh, committed])
        await consumer.commit({committed: OffsetAndMetadata(4, "")})  # partition 1 committed, partition 0 not
        assert await _read_all(consumer, 16) == {0: list(range(10)), 1: list(range(4, 10))}

        # what faust relied on: aiokafka's seek leaves a partition without a committed offset where it was,
        # so records taken from it and dropped are never fetched again
        assert await consumer.seek_to_committed() == {fresh: None, committed: 4}
        assert (await consumer.position(fresh), await consumer.position(committed)) == (10, 4)
        await _read_all(consumer, 6)

        # the worker's: the same, and the uncommitted partition of a stream topic back to its beginning
        offsets = await seek_to_committed_or_beginning(consumer, lambda name: name == topic)
        assert offsets == {fresh: None, committed: 4}
        assert (await consumer.position(fresh), await consumer.position(committed)) == (0, 4)
        assert await _read_all(consumer, 16) == {0: list(range(10)), 1: list(range(4, 10))}

        # partitions of other topics (table changelogs: table recovery positions them) are left where they are
        await seek_to_committed_or_beginning(consumer, lambda name: False)
        assert (await consumer.position(fresh), await consumer.position(committed)) == (10, 4)
    finally:
        await consumer.stop()


def test_the_worker_uses_that_seek(tmp_path):
    """A worker app's consumer thread is the one whose seek rewinds (faust builds it per app)."""
    from memstream.agents.app import create_app
    from memstream.agents.settings import Settings

    worker = {"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "seek-wiring"}
    app = create_app(Settings(worker=worker), stages=("embed",))
    assert isinstance(app.consumer, Consumer)
    assert isinstance(app.consumer._thread, ConsumerThread)
