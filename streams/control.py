"""Control topics (``topics.CONTROL``): compacted, one partition, keyed by record id. Each holds a small table
every worker keeps in memory (API keys, forgotten users); these helpers create, write and read them."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from memstream.streams.admin import admin_client
from memstream.streams.settings import KafkaSettings

__all__ = ["ensure_control_topic", "publish_control", "read_control"]


async def ensure_control_topic(kafka: KafkaSettings, name: str) -> bool:
    """Create the compacted, single-partition topic ``name`` if missing; True if it was created."""
    async with admin_client(kafka) as admin:
        if name in set(await admin.list_topics()):
            return False
        topic = NewTopic(
            name=name,
            num_partitions=1,
            replication_factor=kafka.replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        )
        try:
            await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            return False
        return True


async def publish_control(kafka: KafkaSettings, name: str, key: str, value: bytes | None) -> None:
    """Write one record (None: a tombstone) and wait for the broker's ack (acks=all); creates the topic first
    if it is missing."""
    await ensure_control_topic(kafka, name)
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(name, key=key.encode(), value=value, partition=0)
    finally:
        await producer.stop()


async def read_control(kafka: KafkaSettings, name: str, timeout_s: float = 30.0) -> dict[str, bytes]:
    """Every key's latest value on the topic (tombstoned keys left out), read to its current end; a missing
    topic is created (and read as empty)."""
    await ensure_control_topic(kafka, name)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, bytes] = {}
    try:
        tp = TopicPartition(name, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {name} took over {timeout_s} s")
            batch = await consumer.getmany(tp, timeout_ms=500)
            for message in batch.get(tp, []):
                if message.value is None:
                    latest.pop(message.key.decode(), None)
                else:
                    latest[message.key.decode()] = message.value
    finally:
        await consumer.stop()
    return latest
