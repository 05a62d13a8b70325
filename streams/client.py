"""The client users import: publish events, subscribe to memory updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from memstream.streams.admin import ensure_topics
from memstream.streams.codec import decode, encode
from memstream.streams.contracts import FeedbackEvent, InteractionEvent, MemoryUpdate
from memstream.streams.settings import KafkaSettings, kafka_settings

Publishable = InteractionEvent | FeedbackEvent


def coerce_event(event: Publishable | Mapping[str, Any]) -> Publishable:
    """Validate a dict into a contract record; bad input raises InvalidRecord before anything is sent."""
    if isinstance(event, (InteractionEvent, FeedbackEvent)):
        return event
    raw = orjson.dumps(dict(event))
    if "prediction" in event:
        return decode(raw, FeedbackEvent)
    return decode(raw, InteractionEvent)


class KafkaAuthenticationError(KafkaConnectionError):  # type: ignore[misc]  # aiokafka is untyped
    """The broker refused the client's SASL credentials (wrong user, password or mechanism)."""


async def _authentication_failure(kafka: KafkaSettings, timeout: float = 10.0) -> str | None:
    """Why a SASL client could not bootstrap, when the reason is its credentials; else None.

    aiokafka logs the SASL error and raises a bare "Unable to bootstrap", so this opens one connection per
    bootstrap server itself and returns the broker's authentication error, if that is what it answers."""
    if not kafka.security_protocol.startswith("SASL"):
        return None
    options = {k: v for k, v in kafka.client_kwargs().items() if k != "bootstrap_servers"}
    for server in kafka.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **options), timeout)
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            return str(exc)
        except (OSError, ValueError, KafkaError):  # TimeoutError is an OSError
            continue
        conn.close()
    return None


class Publisher:
    """Idempotent producer (acks=all) keyed by tenant/session, so each session stays ordered.

    Use as ``async with Publisher() as pub: await pub.publish(event)``.
    """

    def __init__(self, kafka: KafkaSettings | None = None, *, create_topics: bool = True, linger_ms: int = 5):
        self.kafka = kafka or kafka_settings()
        self._create_topics = create_topics
        self._producer = AIOKafkaProducer(
            **self.kafka.client_kwargs(), enable_idempotence=True, acks="all", linger_ms=linger_ms
        )

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the topics (unless ``create_topics=False``) and connect; a broker that refuses the
        credentials raises KafkaAuthenticationError saying so."""
        try:
            if self._create_topics:
                await ensure_topics(self.kafka)
            await self._producer.start()
        except KafkaConnectionError as exc:
            reason = await _authentication_failure(self.kafka)
            if reason is None:
                raise
            await self._producer.stop()
            raise KafkaAuthenticationError(
                f"Kafka authentication failed for user {self.kafka.sasl_username!r} at {self.kafka.bootstrap} "
                f"({self.kafka.security_protocol} {self.kafka.sasl_mechanism}): {reason}. Check "
                "MEMSTREAM_KAFKA__SASL_USERNAME, MEMSTREAM_KAFKA__SASL_PASSWORD and MEMSTREAM_KAFKA__SASL_MECHANISM"
            ) from exc
        except TimeoutError as exc:
            if not self._create_topics or not self.kafka.security_protocol.startswith("SASL"):
                raise
            await self._producer.stop()
            raise TimeoutError(
                f"{exc}: this user may lack the ACLs to create or describe memstream's topics; let a worker "
                "(or an admin) create them and start the Publisher with create_topics=False"
            ) from exc

    async def stop(self) -> None:
        await self._producer.stop()

    def _topic_for(self, record: Publishable) -> str:
        topics = self.kafka.topics
        return topics.feedback if isinstance(record, FeedbackEvent) else topics.interactions

    async def publish(self, event: Publishable | Mapping[str, Any]) -> None:
        """Validate and send one event; returns once the broker acknowledged it."""
        record = coerce_event(event)
        await self._producer.send_and_wait(self._topic_for(record), encode(record), key=record.key)

    async def publish_many(self, events: Iterable[Publishable | Mapping[str, Any]]) -> int:
        """Validate all, then send them pipelined; returns the count once every one is acknowledged."""
        records = [coerce_event(e) for e in events]
        futures = [await self._producer.send(self._topic_for(r), encode(r), key=r.key) for r in records]
        await asyncio.gather(*futures)
        return len(records)

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send bytes as they are (no validation): for tools and tests that exercise dead-lettering."""
        await self._producer.send_and_wait(topic, value, key=key)


class Subscription:
    """Memory updates read directly from Kafka, optionally filtered by tenant, session and kind.

    **For trusted in-cluster consumers only**: the tenant filter runs here, in the client, so the process
    reads every tenant's updates from the topic (its Kafka credentials, not this filter, are the boundary).
    A tenant's own subscriber uses the worker's ``GET /updates/`` instead, which filters on the worker by
    the caller's credential: ``subscribe(url=…, key=…)`` (see HttpSubscription).

    ``async with subscribe(...) as updates:`` pins the read position when the block is entered, so nothing
    published after that is missed; ``async for u in subscribe(...)`` works too (position pinned on first
    read). Every subscriber reads all partitions (no consumer group). Delivery is at least once:
    de-duplicate by ``update.update_id``, which is derived from what the update announces.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        session_id: str | None = None,
        kinds: Iterable[str] | None = None,
        from_beginning: bool = False,
        kafka: KafkaSettings | None = None,
    ) -> None:
        self.kafka = kafka or kafka_settings()
        self.tenant_id, self.session_id = tenant_id, session_id
        self.kinds = set(kinds) if kinds else None
        self.from_beginning = from_beginning
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        topic = self.kafka.topics.memory_updates
        consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
        )
        await consumer.start()
        self._consumer = consumer
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:  # not in the first metadata yet: ask again before trying to create the topics
            try:  # (a subscriber under ACLs may read the topic but not create topics)
                partitions = await _wait_partitions(consumer, topic, timeout=2.0)
            except TimeoutError:
                await ensure_topics(self.kafka)
                partitions = await _wait_partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if self.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the position now, so nothing published after this point is missed
            await consumer.position(tp)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _wanted(self, update: MemoryUpdate) -> bool:
        return (
            (self.tenant_id is None or update.tenant_id == self.tenant_id)
            and (self.session_id is None or update.session_id == self.session_id)
            and (self.kinds is None or update.kind in self.kinds)
        )

    async def poll(self, timeout: float = 1.0, max_records: int = 1000) -> list[MemoryUpdate]:
        """The updates that arrive within `timeout` seconds (possibly none); safe to call in a loop."""
        await self.start()
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        updates = [decode(m.value, MemoryUpdate) for tp in sorted(batches) for m in batches[tp]]
        return [u for u in updates if self._wanted(u)]

    async def __aiter__(self) -> AsyncIterator[MemoryUpdate]:
        await self.start()
        assert self._consumer is not None
        async for message in self._consumer:
            update = decode(message.value, MemoryUpdate)
            if self._wanted(update):
                yield update


class HttpSubscription:
    """Memory updates from a worker's ``GET /updates/`` (server-sent events), filtered on the worker by the
    credential's tenant and user: the subscriber never receives another tenant's update. Same use as
    Subscription (``async with``, ``async for``, ``poll``); ``cursor`` is the position after the last update
    read (pass it as ``after`` to resume there); a dropped connection resumes automatically."""

    def __init__(
        self,
        *,
        url: str | None = None,
        key: str | None = None,
        session_id: str | None = None,
        kinds: Iterable[str] | None = None,
        from_beginning: bool = False,
        after: str | None = None,
    ) -> None:
        from memstream.streams.memory_client import AsyncMemoryClient

        self._client = AsyncMemoryClient(url, key=key)
        self._options: dict[str, Any] = {
            "session_id": session_id,
            "kinds": list(kinds) if kinds else None,
            "from_beginning": from_beginning,
            "after": after,
        }
        self.cursor: str | None = after
        self._queue: asyncio.Queue[tuple[str, MemoryUpdate] | BaseException] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def _run(self) -> None:
        try:
            async for item in self._client.updates(**self._options, on_connect=self._connected.set):
                self._queue.put_nowait(item)
        except Exception as exc:  # surfaced to the reader (e.g. 401: the key was revoked)
            self._connected.set()
            self._queue.put_nowait(exc)

    async def start(self) -> None:
        """Connect; returns once the worker has pinned the read position (nothing announced later is missed)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
            await self._connected.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._client.close()

    async def __aenter__(self) -> HttpSubscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _take(self, item: tuple[str, MemoryUpdate] | BaseException) -> MemoryUpdate:
        """The next update handed to the reader; ``cursor`` moves only now, so resuming from it never skips
        an update that was received but not yet read."""
        if isinstance(item, BaseException):
            raise item
        self.cursor, update = item
        return update

    async def poll(self, timeout: float = 1.0, max_records: int = 1000) -> list[MemoryUpdate]:
        """The updates that arrive within `timeout` seconds (possibly none)."""
        await self.start()
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return []
        updates = [self._take(first)]
        while not self._queue.empty() and len(updates) < max_records:
            updates.append(self._take(self._queue.get_nowait()))
        return updates

    async def __aiter__(self) -> AsyncIterator[MemoryUpdate]:
        await self.start()
        while True:
            yield self._take(await self._queue.get())


def subscribe(
    *,
    tenant_id: str | None = None,
    session_id: str | None = None,
    kinds: Iterable[str] | None = None,
    from_beginning: bool = False,
    kafka: KafkaSettings | None = None,
    url: str | None = None,
    key: str | None = None,
) -> Subscription | HttpSubscription:
    """Subscribe to memory updates. With ``url`` or ``key`` (a worker's API and a credential, defaults
    ``MEMSTREAM_API__URL``/``MEMSTREAM_API__KEY``): through the worker's ``/updates/``, only the credential's
    tenant (``tenant_id`` is then the credential's; naming another is refused). Otherwise directly from
    Kafka, for trusted in-cluster consumers (see Subscription)."""
    if url is not None or key is not None:
        if tenant_id is not None:
            raise ValueError("subscribe(url=…, key=…) takes the tenant from the key: leave tenant_id out")
        return HttpSubscription(url=url, key=key, session_id=session_id, kinds=kinds, from_beginning=from_beginning)
    return Subscription(
        tenant_id=tenant_id, session_id=session_id, kinds=kinds, from_beginning=from_beginning, kafka=kafka
    )


async def _wait_partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0) -> set[int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await consumer._client.force_metadata_update()  # aiokafka has no public metadata refresh
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topic {topic} has no partitions after {timeout}s")
