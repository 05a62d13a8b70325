"""The client users import: publish events, subscribe to memory updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from memstream.streams.admin import ensure_topics
from memstream.streams.codec import decode, encode
from memstream.streams.contracts import FeedbackEvent, InteractionEvent, MemoryUpdate
from memstream.streams.settings import KafkaSettings, kafka_settings

Publishable = InteractionEvent | FeedbackEvent
_T = TypeVar("_T")
_BLOCKED_S = 0.05
"""A send that took this long waited for room: back-pressure (it takes microseconds otherwise)."""


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


class PublishError(Exception):
    """Events were not acknowledged by the broker. ``unacknowledged`` holds them, in the order given: none of
    them is known to be written, though some may be (the producer may still deliver what it had buffered), so
    publish them again to be sure; event ids make that harmless (a replayed event is applied once). The
    broker's error, if it gave one, is the ``__cause__``."""

    def __init__(self, message: str, unacknowledged: Sequence[Publishable]) -> None:
        super().__init__(message)
        self.unacknowledged: list[Publishable] = list(unacknowledged)


class PublishTimeoutError(PublishError, TimeoutError):
    """The publisher made no progress for ``timeout_s`` seconds (no room freed, no acknowledgement): the
    broker is down, or far too slow for the rate published. Back-pressure that lasted too long."""


@dataclass
class PublisherStats:
    """What a Publisher did so far; ``waits``/``waited_s`` are its back-pressure: how often, and how long in
    all, a send had to wait for room in the bounded buffer (``max_pending`` unacknowledged events, or the
    producer's own per-partition batch) because the broker did not acknowledge fast enough, or at all."""

    sent: int = 0
    """Events handed to the producer."""
    acknowledged: int = 0
    """Events the broker acknowledged (acks=all)."""
    failed: int = 0
    """Events the broker refused (non-retriable errors; each one is in a PublishError's list)."""
    waits: int = 0
    waited_s: float = 0.0
    blocked: bool = False
    """A send is waiting for room right now: the buffer is full."""
    pending: int = 0
    """Events sent and not acknowledged yet (at most ``max_pending``)."""


class Publisher:
    """Idempotent producer (acks=all) keyed by tenant/session, so each session stays ordered.

    Use as ``async with Publisher() as pub: await pub.publish(event)``.

    Back-pressure: at most ``max_pending`` events are in flight (sent, not yet acknowledged). When the broker
    is slow or down, ``publish``/``publish_many`` wait (their ``await`` blocks; ``stats.waits`` and
    ``stats.waited_s`` count it) while the producer retries; nothing is dropped. When one wait (for room, or
    for the next acknowledgement) lasts ``timeout_s`` seconds, PublishTimeoutError is raised with every event
    of the call not acknowledged (``unacknowledged``); an error the broker returns raises PublishError the
    same way. ``timeout_s=None`` waits as long as the broker takes.
    """

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        create_topics: bool = True,
        linger_ms: int = 5,
        max_pending: int = 10_000,
        timeout_s: float | None = 120.0,
    ):
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.kafka = kafka or kafka_settings()
        self._create_topics = create_topics
        self.max_pending, self.timeout_s = max_pending, timeout_s
        self.stats = PublisherStats()
        self._room = asyncio.Semaphore(max_pending)
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
        """Flush what is buffered (the producer keeps retrying it) and disconnect."""
        await self._producer.stop()

    def _topic_for(self, record: Publishable) -> str:
        topics = self.kafka.topics
        return topics.feedback if isinstance(record, FeedbackEvent) else topics.interactions

    async def _wait(self, step: Awaitable[_T], *, buffer: bool = False, batch: bool = False) -> _T:
        """Await `step` for at most ``timeout_s`` (TimeoutError after that). Back-pressure is counted: a
        wait for room in the buffer (`buffer`) at once when it is full, a wait in the producer's send
        (`batch`: a partition's batch is full) after the fact, when it blocked."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        full = buffer and self._room.locked()
        if full:
            self.stats.waits += 1
            self.stats.blocked = True
        try:
            async with asyncio.timeout(self.timeout_s):
                return await step
        finally:
            took = loop.time() - started
            if full:
                self.stats.blocked = False
                self.stats.waited_s += took
            elif batch and took >= _BLOCKED_S:
                self.stats.waits += 1
                self.stats.waited_s += took

    def _settled(self, future: asyncio.Future[Any]) -> None:
        self._room.release()
        self.stats.pending -= 1
        if future.cancelled() or future.exception() is not None:
            self.stats.failed += 1
        else:
            self.stats.acknowledged += 1

    async def _send(self, record: Publishable) -> asyncio.Future[Any]:
        """Hand one event to the producer once there is room; the future settles at the broker's answer."""
        await self._wait(self._room.acquire(), buffer=True)
        try:
            future: asyncio.Future[Any] = await self._wait(self._producer_send(record), batch=True)
        except BaseException:
            self._room.release()
            raise
        self.stats.sent += 1
        self.stats.pending += 1
        if future.done():  # settled already: counted now, so the stats are exact when the caller resumes
            self._settled(future)
        else:
            future.add_done_callback(self._settled)
        return future

    async def _producer_send(self, record: Publishable) -> asyncio.Future[Any]:
        while True:  # the producer gives up waiting for room in a full batch after its request timeout: wait on
            try:
                future: asyncio.Future[Any] = await self._producer.send(
                    self._topic_for(record), encode(record), key=record.key
                )
                return future
            except KafkaTimeoutError:
                continue  # our own timeout (``timeout_s``, around this loop) decides when to give up

    async def publish(self, event: Publishable | Mapping[str, Any]) -> None:
        """Validate and send one event; returns once the broker acknowledged it (see the class for
        back-pressure and PublishError)."""
        await self.publish_many([event])

    async def publish_many(self, events: Iterable[Publishable | Mapping[str, Any]]) -> int:
        """Validate all, then send them pipelined (at most ``max_pending`` unacknowledged at a time); returns
        the count once every one is acknowledged. Raises PublishTimeoutError / PublishError (with the events
        not acknowledged) as the class says; never returns with an event unsent."""
        records = [coerce_event(e) for e in events]
        futures: list[asyncio.Future[Any]] = []
        try:
            for record in records:
                futures.append(await self._send(record))
            for future in futures:
                await self._wait(asyncio.shield(future))
        except TimeoutError as exc:
            raise PublishTimeoutError(
                f"no progress for {self.timeout_s} s: the broker ({self.kafka.bootstrap}) acknowledged "
                f"{self._acknowledged(futures)} of {len(records)} events; is it down?",
                self._unacknowledged(records, futures),
            ) from exc
        except KafkaError as exc:
            raise PublishError(
                f"the broker refused events ({exc!r}); {self._acknowledged(futures)} of {len(records)} acknowledged",
                self._unacknowledged(records, futures),
            ) from exc
        return len(records)

    @staticmethod
    def _acknowledged(futures: Sequence[asyncio.Future[Any]]) -> int:
        return sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)

    @staticmethod
    def _unacknowledged(records: Sequence[Publishable], futures: Sequence[asyncio.Future[Any]]) -> list[Publishable]:
        acked = [f.done() and not f.cancelled() and f.exception() is None for f in futures]
        return [r for i, r in enumerate(records) if i >= len(acked) or not acked[i]]

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
