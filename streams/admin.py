"""Topic administration: create memstream's topics with explicit partition counts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from memstream.streams.settings import KafkaSettings

log = logging.getLogger(__name__)


@asynccontextmanager
async def admin_client(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client with the settings' bootstrap and security options, closed on exit."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(
    kafka: KafkaSettings, extra: dict[str, int] | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Create every memstream topic that does not exist yet, wait until each partition has a leader, and
    return the names created.

    Partition counts are explicit (``kafka.partitions``), never the broker's default, so a source topic
    and the changelogs of the tables it feeds agree.
    """
    wanted = {name: kafka.partitions for name in kafka.topics.all()}
    wanted.update(extra or {})
    async with admin_client(kafka) as admin:
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
        await _until_led(admin, wanted, timeout_s)
        return [t.name for t in missing]


async def _until_led(admin: AIOKafkaAdminClient, wanted: dict[str, int], timeout_s: float) -> None:
    """Wait until every topic in ``wanted`` has all its partitions, each with a leader.

    Right after creation a partition can still be without a leader; a consumer that fetches metadata then
    leaves the topic out (aiokafka logs "not found in cluster metadata") and Faust's assignor ignores it
    ("Ignoring missing topic") until the next rebalance: a worker started at that moment reads nothing."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(list(wanted))
        ready = {
            t["topic"]
            for t in described
            if t["error_code"] == 0
            and len(t["partitions"]) >= wanted.get(t["topic"], 1)
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
        }
        waiting = sorted(set(wanted) - ready)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader for every partition after {timeout_s:.0f}s: {waiting}")
        await asyncio.sleep(0.2)


async def cluster_id(kafka: KafkaSettings) -> str:
    """The id of the Kafka cluster the settings point at (new whenever a broker's storage is formatted)."""
    async with admin_client(kafka) as admin:
        found = (await admin.describe_cluster()).get("cluster_id")
    if not found:
        raise RuntimeError(f"the broker at {kafka.bootstrap} did not say its cluster id")
    return str(found)


async def delete_topics(kafka: KafkaSettings, match: Callable[[str], bool]) -> list[str]:
    """Delete every topic whose name ``match(name)`` accepts; return the names deleted."""
    async with admin_client(kafka) as admin:
        names = sorted(name for name in await admin.list_topics() if match(name))
        if names:
            await admin.delete_topics(names)
            log.info("deleted topics %s", names)
        return names
