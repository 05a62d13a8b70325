"""Topic administration: create memstream's topics with explicit partition counts."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(kafka: KafkaSettings, extra: dict[str, int] | None = None) -> list[str]:
    """Create every memstream topic that does not exist yet; return the names created.

    Partition counts are explicit (``kafka.partitions``), never the broker's default, so a source topic
    and the changelogs of the tables it feeds agree.
    """
    wanted = {name: kafka.partitions for name in kafka.topics.all()}
    wanted.update(extra or {})
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name=name, num_partitions=parts, replication_factor=kafka.replication_factor)
            for name, parts in wanted.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process won the race: fine
                pass
            log.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()
