"""Follow a control topic (compacted, one partition) for as long as the worker runs: every record from the
beginning, then each new one within about a poll interval; ``on_ready`` once the end offset found at start
is reached (until then the table is incomplete and its users wait or refuse)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from memstream.streams.control import ensure_control_topic
from memstream.streams.settings import KafkaSettings

__all__ = ["follow_control_topic"]

log = logging.getLogger(__name__)


async def follow_control_topic(
    kafka: KafkaSettings,
    name: str,
    apply: Callable[[str, bytes | None], None],
    on_ready: Callable[[], None],
    poll_s: float = 0.5,
) -> None:
    """Feed ``apply(key, value or None for a tombstone)`` from topic ``name`` forever (creating it if this
    worker may). ``apply`` raising ValueError for a record is logged and the record skipped."""
    try:
        await ensure_control_topic(kafka, name)
    except KafkaError as exc:  # e.g. no CREATE permission: the operator creates it
        log.info("not creating %s (%s); reading it", name, exc)
    tp = TopicPartition(name, 0)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        ready = False
        while True:
            batch = await consumer.getmany(tp, timeout_ms=int(poll_s * 1000))
            for message in batch.get(tp, []):
                try:
                    apply(message.key.decode(), message.value)
                except ValueError as exc:
                    log.error("unreadable record at %s offset %d: %s", name, message.offset, exc)
            if not ready and await consumer.position(tp) >= end:
                ready = True
                on_ready()
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
