"""Helpers of the fault tests: synthetic multi-session streams, a reference segmentation, topic readers,
a private broker, and a look inside a stopped worker's embedded store."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from memstream.agents.store import Collection, EdgeStore, StoreConfig
from memstream.agents.store.base import EVENT_FIELDS
from memstream.agents.store.schema import CONTEXT
from memstream.models.event_context import context_weights
from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState
from memstream.streams.admin import admin_client
from memstream.streams.codec import decode
from memstream.streams.contracts import CONTROL_KINDS, EPISODE_UPDATES, InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import decode_with_vector
from memstream.streams.settings import KafkaSettings

TOPICS: dict[str, list[str]] = json.loads((Path(__file__).parents[1] / "fixtures" / "three_topics.json").read_text())

# The fault tests run the worker's shipped defaults (Faust's 60 s Kafka session timeout, the segment stage's
# idle sealing: agents/settings.py says why its default outlasts a fail-over). Two tests are about something
# else than the fail-over's timing (the seek on a partition nothing was committed on, a store outage) and
# SIGKILL a worker whose replacement would otherwise wait out the dead one's session: they shorten it.
FAST_FAILOVER_ENV = {
    "BROKER_SESSION_TIMEOUT": "10",
    "BROKER_HEARTBEAT_INTERVAL": "1",
}


# -- streams ---------------------------------------------------------------------------------------------


def conversation(tenant: str, user: str, session: str, length: int, rng: random.Random) -> list[InteractionEvent]:
    """`length` events switching topic every 8–16 events (so episodes exist), then a `session_end`."""
    names = list(TOPICS)
    texts: list[str] = []
    topic = rng.choice(names)
    while len(texts) < length:
        block = rng.randint(8, 16)
        texts.extend(rng.choice(TOPICS[topic]) for _ in range(block))
        topic = rng.choice([n for n in names if n != topic])
    texts = texts[:length]
    t0 = 1_764_000_000.0 + rng.randint(0, 86_400)
    events = [
        InteractionEvent(
            event_id=f"{session}-{i:04d}",
            tenant_id=tenant,
            user_id=user,
            session_id=session,
            ts=t0 + 30 * i,
            role="user" if i % 2 == 0 else "assistant",
            text=text,
        )
        for i, text in enumerate(texts)
    ]
    end = InteractionEvent(
        event_id=f"{session}-end",
        tenant_id=tenant,
        user_id=user,
        session_id=session,
        ts=t0 + 30 * length,
        role="system",
        kind="session_end",
        text="",
    )
    return [*events, end]


def interleave(sessions: list[list[InteractionEvent]], rng: random.Random) -> list[InteractionEvent]:
    """Merge sessions into one stream, each session's order kept (as concurrent users would produce)."""
    cursors = [0] * len(sessions)
    live = [i for i, s in enumerate(sessions) if s]
    out: list[InteractionEvent] = []
    while live:
        i = rng.choice(live)
        out.append(sessions[i][cursors[i]])
        cursors[i] += 1
        if cursors[i] == len(sessions[i]):
            live.remove(i)
    return out


# -- topics ----------------------------------------------------------------------------------------------


class TopicReader:
    """Reads every partition of a topic from the beginning (read_committed), incrementally."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.values: list[bytes] = []
        self.timestamps: list[int] = []
        """Each value's record timestamp (ms; CreateTime: when its producer sent it)."""
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, timeout: float = 0.5) -> list[bytes]:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=10_000)
        records = [m for tp in sorted(batch) for m in batch[tp]]
        self.values.extend(m.value for m in records)
        self.timestamps.extend(m.timestamp for m in records)
        return [m.value for m in records]


class UpdateLog:
    """Every memory update read so far, with the time each update_id was first seen."""

    def __init__(self) -> None:
        self.all: list[MemoryUpdate] = []
        self.first_seen: dict[str, float] = {}

    def add(self, raws: Iterable[bytes]) -> None:
        now = time.monotonic()
        for raw in raws:
            update = decode(raw, MemoryUpdate)
            self.all.append(update)
            self.first_seen.setdefault(update.update_id, now)

    def ids(self, kind: UpdateKind) -> set[str]:
        return {u.ids[0] for u in self.all if u.kind == kind}

    def sealed(self) -> dict[tuple[str, str, int], list[str]]:
        """(tenant, session, episode index) -> member event ids, from `episode_sealed` updates: the first
        announcement of each (what the README tells subscribers to keep; `duplicates` shows any other)."""
        sealed: dict[tuple[str, str, int], list[str]] = {}
        for u in self.all:
            if u.kind == UpdateKind.EPISODE_SEALED:
                sealed.setdefault((u.tenant_id, u.session_id, u.payload["episode_index"]), list(u.payload["event_ids"]))
        return sealed

    def duplicates(self) -> tuple[Counter[str], list[tuple[MemoryUpdate, MemoryUpdate]]]:
        """Every announcement after the first about the same thing (kind, tenant, announced ids: an event,
        an episode), classified: identical replays (every field equal, the update id too; counted by kind)
        and divergent ones (e.g. an episode sealed again with other members, which its update id covers),
        as (first, later) pairs."""
        first: dict[tuple[str, str, tuple[str, ...]], MemoryUpdate] = {}
        identical: Counter[str] = Counter()
        divergent: list[tuple[MemoryUpdate, MemoryUpdate]] = []
        for u in self.all:
            seen = first.setdefault((str(u.kind), u.tenant_id, tuple(u.ids)), u)
            if seen is u:
                continue
            if u == seen:
                identical[str(u.kind)] += 1
            else:
                divergent.append((seen, u))
        return identical, divergent

    def duplicate_problems(self) -> list[str]:
        """Divergent announcements as failure lines (none: []); prints the identical replays' count."""
        identical, divergent = self.duplicates()
        print(
            f"{len(self.all)} announcements, {len(self.first_seen)} distinct; identical replays "
            f"{sum(identical.values())} {dict(identical)}; divergent {len(divergent)}"
        )
        if not divergent:
            return []
        a, b = divergent[0]
        return [
            f"{len(divergent)} announcements differ from the first about the same thing, e.g. {a.kind} {a.ids}: "
            f"first {a.model_dump()}, later {b.model_dump()}"
        ]


async def committed_offsets(kafka: KafkaSettings, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset of each partition of `topic` (absent: none committed)."""
    async with admin_client(kafka) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


async def group_assignment(kafka: KafkaSettings, group: str) -> list[dict[str, set[int]]]:
    """Each member's assigned partitions, by topic (Faust's assignor puts actives and standbys there)."""
    return list((await assignment_by_client(kafka, group)).values())


async def assignment_by_client(kafka: KafkaSettings, group: str) -> dict[str, dict[str, set[int]]]:
    """Each member's assigned partitions by topic, keyed by "<client id>|<member id>" (a worker started
    with ``BROKER_CLIENT_ID=…`` can be told apart)."""
    async with admin_client(kafka) as admin:
        (response,) = await admin.describe_consumer_groups([group])
    members: dict[str, dict[str, set[int]]] = {}
    for group_info in response.groups:
        for member in group_info[5]:  # (error, group, state, protocol type, protocol, members, …)
            # every version's member ends with client_id, client_host, member_metadata, member_assignment
            client, raw = f"{member[-4]}|{member[0]}", member[-1]
            if not raw:
                members[client] = {}
                continue
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
            members[client] = {topic: set(parts) for topic, parts in assignment.assignment}
    return members


async def where_missing(kafka: KafkaSettings, event_ids: Iterable[str], groups: Iterable[str]) -> str:
    """Where events the test never saw indexed got to, for a failure message: on each topic of the
    interaction path, the partition and offset of each one's first copy (None: it never got there), on
    `memory-updates` those of its `event_indexed` update (read again from the beginning: the test's own
    reader may have missed it), and each consumer group's committed offsets."""
    wanted = sorted(set(event_ids))
    t = kafka.topics
    lines = []
    for topic in (t.interactions, t.embedded, t.episodes, t.memory_updates):
        needle = (
            (lambda i: f'"ids":["{i}"]'.encode())
            if topic == t.memory_updates
            else (lambda i: f'"event_id":"{i}"'.encode())
        )
        kind = b'"event_indexed"' if topic == t.memory_updates else b""
        found: dict[str, tuple[int, int]] = {}
        consumer = AIOKafkaConsumer(
            **kafka.client_kwargs(), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            for _ in range(200):
                positions = [await consumer.position(tp) for tp in tps]
                if all(at >= ends[tp] for at, tp in zip(positions, tps)):
                    break
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for tp, records in batch.items():
                    for m in records:
                        if m.value and kind in m.value:
                            for i in wanted:
                                if i not in found and needle(i) in m.value:
                                    found[i] = (tp.partition, m.offset)
        finally:
            await consumer.stop()
        ends_by_partition = dict(sorted((tp.partition, o) for tp, o in ends.items()))
        lines.append(f"{topic}: {[(i, found.get(i)) for i in wanted]} (ends {ends_by_partition})")
    for group in groups:
        for topic in (t.interactions, t.embedded, t.episodes):
            offsets = await committed_offsets(kafka, group, topic)
            if offsets:
                lines.append(f"group {group} committed on {topic}: {dict(sorted(offsets.items()))}")
    return "\n".join(lines)


# -- the reference -----------------------------------------------------------------------------------------


@dataclass
class Reference:
    """What a crash-free worker makes of the stream: every update it announces, every episode, and what its
    store holds (each event's vector, each sealed episode's centroid)."""

    update_ids: set[str] = field(default_factory=set)
    sealed: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    opened: set[tuple[str, str, int]] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)
    events: dict[tuple[str, str], InteractionEvent] = field(default_factory=dict)
    """(tenant, event id) -> the message event, as published (control records are not stored)."""
    vectors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    """(tenant, event id) -> the vector of the event's first copy on `embedded` (the one the segmenter applies)."""
    centroids: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)
    sealed_span: dict[tuple[str, str, int], tuple[float, float]] = field(default_factory=dict)
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(tenant, event id) -> episode changes (opened, sealed) the event causes: announcements a replay of it
    may repeat."""
    unpublished: list[str] = field(default_factory=list)
    """Records on `embedded` nobody published (the worker's own idle seals): none in a crash-free run of
    sessions that end with `session_end` before they idle."""
    missing: list[str] = field(default_factory=list)
    """Published events with no copy on `embedded` (lost before segmentation)."""

    def episode_of(self) -> dict[tuple[str, str], int]:
        """(tenant, event id) -> index of the sealed episode that holds it."""
        return {(t, e): i for (t, _s, i), members in self.sealed.items() for e in members}


def reference(
    frames: list[bytes], config: SegmentationConfig, published: Sequence[InteractionEvent] | None = None
) -> Reference:
    """Segment a stream with models.segmenter, the way the segment and index agents do, and list the
    updates a crash-free run announces and what it stores.

    The vectors are those that actually went through the pipeline (each event's first copy on the
    `embedded` topic, `frames`), so the reference compares segmentation and its recovery, not the
    embedder's floating-point reproducibility across batch shapes. The records are the `published` ones,
    in their order (each session's order is its partition's, on `embedded` as well); records on `embedded`
    that nobody published (a worker's idle seal after a fail-over) are left out and listed in
    ``unpublished``, so an early seal shows up as a difference. Without `published`, the records of
    `embedded` as they are."""
    segmenter = Segmenter(config)
    states: dict[bytes, SessionState] = defaultdict(SessionState)
    ref = Reference()
    first: dict[tuple[str, str], tuple[InteractionEvent, np.ndarray]] = {}
    for frame in frames:
        record, vector = decode_with_vector(frame, InteractionEvent)
        if (record.tenant_id, record.event_id) in first:
            ref.duplicates.append(record.event_id)
            continue
        first[(record.tenant_id, record.event_id)] = (record, vector)
    if published is None:
        inputs = list(first.values())
    else:
        wanted = {(e.tenant_id, e.event_id) for e in published}
        ref.unpublished = [k[1] for k in first if k not in wanted]
        ref.missing = [e.event_id for e in published if (e.tenant_id, e.event_id) not in first]
        inputs = [(e, first[(e.tenant_id, e.event_id)][1]) for e in published if (e.tenant_id, e.event_id) in first]

    def announce(kind: UpdateKind, tenant: str, ids: list[str], salt: str = "") -> None:
        ref.update_ids.add(MemoryUpdate.make(kind, tenant, ids, 0.0, salt=salt).update_id)  # ts is not in the id

    for record, vector in inputs:
        state = states[record.key]
        announce(UpdateKind.EVENT_RECEIVED, record.tenant_id, [record.event_id])
        if record.kind in CONTROL_KINDS:
            changes = segmenter.flush(state)
        else:
            ref.events[(record.tenant_id, record.event_id)] = record
            ref.vectors[(record.tenant_id, record.event_id)] = np.array(vector, dtype=np.float32)
            changes = segmenter.push(state, record.event_id, record.ts, vector, record.text)
            announce(UpdateKind.EVENT_INDEXED, record.tenant_id, [record.event_id])
        ref.changes[(record.tenant_id, record.event_id)] += len(changes)
        for change in changes:
            key = (record.tenant_id, record.session_id, change.episode_index)
            members = "|".join(change.event_ids) if change.kind == "sealed" else ""  # a sealed id covers its members
            announce(
                EPISODE_UPDATES[change.kind], record.tenant_id, [f"{record.session_id}#{change.episode_index}"], members
            )
            if change.kind == "sealed":
                ref.sealed[key] = list(change.event_ids)
                ref.sealed_span[key] = (change.start_ts, change.end_ts)
                if change.centroid is not None:
                    ref.centroids[key] = np.array(change.centroid, dtype=np.float32)
            else:
                ref.opened.add(key)
    return ref


# -- the store of a stopped worker ---------------------------------------------------------------------------


async def store_counts(state_dir: Path, tenants: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(events, episodes) stored per tenant in the embedded store under `state_dir` (worker stopped)."""
    async with EdgeStore(StoreConfig(), state_dir=state_dir) as store:
        return {
            t: (await store.count(Collection.EVENTS, t), await store.count(Collection.EPISODES, t)) for t in tenants
        }


@dataclass
class StoreContent:
    """Every point of a stopped worker's embedded store: payloads and dense vectors (own and context)."""

    events: dict[tuple[str, str], tuple[dict, np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    """(tenant, event id) -> (payload, own vector, context vector)."""
    episodes: dict[tuple[str, str, int], tuple[dict, np.ndarray | None]] = field(default_factory=dict)
    """(tenant, session, episode index) -> (payload, centroid)."""


async def store_content(state_dir: Path) -> StoreContent:
    """Read every event and episode point of the embedded store under `state_dir` (worker stopped)."""
    content = StoreContent()
    async with EdgeStore(StoreConfig(), state_dir=state_dir) as store:
        for collection in (Collection.EVENTS, Collection.EPISODES):
            offset = None
            while True:
                found, offset = await store._scroll_page(collection, offset, 512)  # every point, with its vectors
                for payload, raw, _ in found:
                    named = raw if isinstance(raw, dict) else {"": raw}
                    own = None if named.get("") is None else np.asarray(named[""], dtype=np.float32)
                    if collection is Collection.EVENTS:
                        context = named.get(CONTEXT)
                        context = None if context is None else np.asarray(context, dtype=np.float32)
                        content.events[(payload["tenant_id"], payload["event_id"])] = (payload, own, context)
                    else:
                        key = (payload["tenant_id"], payload["session_id"], int(payload["episode_index"]))
                        content.episodes[key] = (payload, own)
                if offset is None:
                    break
    return content


def _far(got: np.ndarray | None, want: np.ndarray, tol: float) -> bool:
    return got is None or got.shape != want.shape or float(np.max(np.abs(got - want), initial=0.0)) > tol


def content_problems(ref: Reference, content: StoreContent, beta: float, tol: float = 1e-6) -> list[str]:
    """How the store's content differs from what a crash-free run stores, as failure lines (none: []):
    the same events (every field of each, its episode index, its vector and context vector within `tol`)
    and the same sealed episodes (members, span, centroid within `tol`); nothing else."""
    problems: list[str] = []
    episode_of = ref.episode_of()
    want_context: dict[tuple[str, str], np.ndarray] = {}
    for (tenant, _session, _index), members in ref.sealed.items():
        order = sorted(members, key=lambda e: ref.events[(tenant, e)].ts)
        own = np.stack([ref.vectors[(tenant, e)] for e in order])
        mixed = (context_weights(len(order), beta) @ own.astype(np.float64)).astype(np.float32)
        want_context.update(((tenant, e), mixed[i]) for i, e in enumerate(order))

    def report(what: str, bad: list) -> None:
        if bad:
            problems.append(f"store: {len(bad)} {what}, e.g. {bad[:3]}")

    report("events a crash-free run stores are missing", sorted(set(ref.events) - set(content.events)))
    report("events stored that a crash-free run does not store", sorted(set(content.events) - set(ref.events)))
    fields, vectors, episodes, contexts = [], [], [], []
    for key in sorted(set(ref.events) & set(content.events)):
        payload, own, context = content.events[key]
        event = ref.events[key]
        want = {name: getattr(event, name) for name in EVENT_FIELDS}
        got = {name: payload.get(name) for name in EVENT_FIELDS}
        got["attributes"] = dict(got["attributes"] or {})
        if got != want:
            fields.append((key, {k: (got[k], want[k]) for k in want if got[k] != want[k]}))
        if _far(own, ref.vectors[key], tol):
            vectors.append(key)
        if payload.get("episode_index") != episode_of.get(key):
            episodes.append((key, payload.get("episode_index"), episode_of.get(key)))
        if key in want_context and _far(context, want_context[key], tol):
            contexts.append(key)
    report("events with other fields (got, want)", fields)
    report(f"events whose vector differs by more than {tol}", vectors)
    report("events with another episode index (got, want)", episodes)
    report(f"events whose context vector differs by more than {tol}", contexts)

    report("sealed episodes missing", sorted(set(ref.sealed) - set(content.episodes)))
    report("episodes stored that a crash-free run does not seal", sorted(set(content.episodes) - set(ref.sealed)))
    members, spans, centroids = [], [], []
    for key in sorted(set(ref.sealed) & set(content.episodes)):
        payload, centroid = content.episodes[key]
        if list(payload.get("event_ids") or []) != ref.sealed[key] or payload.get("state") != "sealed":
            members.append((key, payload.get("state"), payload.get("event_ids"), ref.sealed[key]))
        if (float(payload["start_ts"]), float(payload["end_ts"])) != ref.sealed_span[key]:
            spans.append(key)
        if key in ref.centroids and _far(centroid, ref.centroids[key], tol):
            centroids.append(key)
    report("episodes with other members or state (state, got, want)", members)
    report("episodes with another time span", spans)
    report(f"episodes whose centroid differs by more than {tol}", centroids)
    return problems


# -- replays at a kill point ----------------------------------------------------------------------------------


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """Each partition's end offset (the next record's) of `topic`, now."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(kafka.partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def read_range(kafka: KafkaSettings, topic: str, ranges: dict[int, tuple[int, int]]) -> dict[int, list[bytes]]:
    """The records of each partition p of `topic` at offsets [start, end) of ``ranges[p]``."""
    out: dict[int, list[bytes]] = {p: [] for p in ranges}
    todo = {p: r for p, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return out
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in todo}
        consumer.assign(list(tps.values()))
        for p, (start, _end) in todo.items():
            consumer.seek(tps[p], start)
        deadline = time.monotonic() + 120
        while todo and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                if tp.partition not in todo:
                    continue
                end = todo[tp.partition][1]
                out[tp.partition].extend(m.value for m in records if m.offset < end)
                if records and records[-1].offset + 1 >= end:
                    todo.pop(tp.partition)
                    consumer.pause(tp)
            for p in list(todo):
                if await consumer.position(tps[p]) >= todo[p][1]:
                    todo.pop(p)
    finally:
        await consumer.stop()
    assert not todo, f"{topic}: could not read {todo}"
    return out


@dataclass
class KillPoint:
    """Where a consumer group stood when one of its workers was SIGKILLed: the group's committed offsets
    and each topic's end offset, read right after the kill (before anyone took the partitions over)."""

    committed: dict[str, dict[int, int]]
    ends: dict[str, dict[int, int]]


async def kill_point(kafka: KafkaSettings, group: str, consumed: Iterable[str], seen: Iterable[str] = ()) -> KillPoint:
    """The KillPoint of `group` on the topics it `consumed` (committed offsets and ends) and on the topics
    whose ends only are wanted (`seen`: what the dead worker had produced)."""
    consumed = list(consumed)
    committed = {t: await committed_offsets(kafka, group, t) for t in consumed}
    ends = {t: await end_offsets(kafka, t) for t in [*consumed, *seen]}
    return KillPoint(committed, ends)


async def watch_rebalance(
    kafka: KafkaSettings, group: str, gone: str, consumed: Iterable[str], seen: Iterable[str] = (), every: float = 0.2
) -> KillPoint:
    """The survivors' window at the rebalance a SIGKILL causes: start it right after the kill of the member
    whose client id is `gone`. A rebalance revokes every partition, and at least once each survivor then
    processes again what it had processed on its own partitions without committing. Returns the group's
    committed offsets as last seen before the rebalance (while the group was still stable with the dead
    member in it: a survivor commits no less at its revocation) and the topics' ends once the group is
    stable again without it (everything a survivor processed before its revocation is below them)."""
    consumed, seen = list(consumed), list(seen)
    committed: dict[str, dict[int, int]] | None = None
    while True:
        async with admin_client(kafka) as admin:
            (response,) = await admin.describe_consumer_groups([group])
            state = response.groups[0][2]
            clients = {member[-4] for member in response.groups[0][5]}
            if state == "Stable" and gone in clients:
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {
                    t: {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == t and m.offset >= 0}
                    for t in consumed
                }
        if state == "Stable" and gone not in clients and clients:
            assert committed is not None, f"the group was never seen stable with {gone} in it"
            ends = {t: await end_offsets(kafka, t) for t in [*consumed, *seen]}
            return KillPoint(committed, ends)
        await asyncio.sleep(every)


def _window(kill: KillPoint, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Offsets a dead worker may have processed without committing: [committed, end at the kill)."""
    return {p: (kill.committed[topic].get(p, 0), kill.ends[topic][p]) for p in partitions}


async def pipeline_replay_bound(
    kafka: KafkaSettings, kill: KillPoint, partitions: Iterable[int], ref: Reference
) -> tuple[int, str]:
    """The most announcements a SIGKILLed embed+segment worker's replays can repeat, and how it adds up.

    At least once, its successor processes again what it had processed on its `partitions` past the
    group's committed offsets, and no more. On `interactions` (embed stage): each record past the
    committed offset that it had started on (its receipt announced or its embedding on `embedded`, both
    read up to their ends at the kill) may repeat its receipt and, re-embedded, be forwarded again (an
    `event_indexed`). On `embedded` (segment stage): each record in [committed, end at the kill) may be
    forwarded again (an `event_indexed`, if a message) and repeat the episode changes it causes."""
    t = kafka.topics
    partitions = sorted(partitions)
    updates = await read_range(
        kafka, t.memory_updates, {p: (0, kill.ends[t.memory_updates][p]) for p in kill.ends[t.memory_updates]}
    )
    received = {
        (u.tenant_id, u.ids[0])
        for values in updates.values()
        for u in (decode(v, MemoryUpdate) for v in values)
        if u.kind == UpdateKind.EVENT_RECEIVED
    }
    embedded_before = await read_range(kafka, t.embedded, {p: (0, kill.ends[t.embedded][p]) for p in partitions})
    embedded_ids = {
        (r.tenant_id, r.event_id)
        for values in embedded_before.values()
        for r in (decode_with_vector(v, InteractionEvent)[0] for v in values)
    }
    bound_int = 0
    for values in (await read_range(kafka, t.interactions, _window(kill, t.interactions, partitions))).values():
        for raw in values:
            record = decode(raw, InteractionEvent)
            key = (record.tenant_id, record.event_id)
            if key in received or key in embedded_ids:
                bound_int += 1 + (record.kind not in CONTROL_KINDS)
    bound_emb = 0
    window = _window(kill, t.embedded, partitions)
    for values in (await read_range(kafka, t.embedded, window)).values():
        for raw in values:
            record, _ = decode_with_vector(raw, InteractionEvent)
            bound_emb += (record.kind not in CONTROL_KINDS) + ref.changes[(record.tenant_id, record.event_id)]
    how = f"interactions {_window(kill, t.interactions, partitions)} -> {bound_int}, embedded {window} -> {bound_emb}"
    return bound_int + bound_emb, how


def index_replay_bound(kafka: KafkaSettings, kill: KillPoint) -> tuple[int, str]:
    """The most announcements a SIGKILLed index worker's replay can repeat: one per `episodes` record
    past its group's committed offsets, up to the topic's end at the kill (every partition: it had them
    all)."""
    t = kafka.topics
    window = _window(kill, t.episodes, kill.ends[t.episodes])
    return sum(end - start for start, end in window.values()), f"episodes {window}"


def fault_counts(test: str, seed: int, lost: int, identical: int, divergent: int, bound: int | None = None) -> str:
    """The one line per fault test that the nightly run collects (`make faults-nightly`)."""
    line = f"fault-counts test={test} seed={seed} lost={lost} identical={identical} divergent={divergent}" + (
        "" if bound is None else f" identical_bound={bound}"
    )
    print(line)
    return line


# -- fuzzed records ------------------------------------------------------------------------------------------

_GOOD = {"event_id": "e", "tenant_id": "fuzz", "user_id": "u", "session_id": "s", "ts": 1_764_000_000.0, "text": "hi"}
_FIELDS = (
    "schema_version",
    "event_id",
    "tenant_id",
    "user_id",
    "session_id",
    "ts",
    "role",
    "kind",
    "text",
    "attributes",
)
_ODD_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    1.5,
    10**30,
    "",
    "x" * 300,
    "a/b",
    "sp ace",
    [],
    [1, "x"],
    {},
    {"nested": {"deep": [1, 2]}},
    "NaN",
    "\u0000",
    "é" * 200,
]


def _corrupt_json(rng: random.Random) -> bytes:
    good = orjson.dumps({**_GOOD, "event_id": f"j{rng.randrange(10**9)}"})
    cut = rng.randrange(1, len(good) - 1)
    return rng.choice(
        [
            good[:cut],  # truncated
            good + b"}" * rng.randint(1, 3),  # trailing garbage
            good.replace(b'"', b"'"),  # single quotes
            good[:cut] + bytes([rng.randrange(256)]) + good[cut + 1 :],  # one byte flipped
            b"[" * 2000 + b"]" * 2000,  # nesting beyond the parser's depth limit
            good.replace(b"1764000000.0", rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999"])),
            good.replace(b'"hi"', b'"\\ud800"'),  # lone surrogate
            good.replace(b'"hi"', b'"\xff\xfe"'),  # invalid UTF-8 inside a string
        ]
    )


def _wrong_shape(rng: random.Random) -> bytes:
    record = {**_GOOD, "event_id": f"w{rng.randrange(10**9)}"}
    kind = rng.randrange(7)
    if kind == 0:  # a field of the wrong type or out of its range
        name = rng.choice(_FIELDS)
        record[name] = rng.choice(_ODD_VALUES)
    elif kind == 1:  # a required field missing
        del record[rng.choice(["event_id", "tenant_id", "user_id", "session_id", "ts", "text"])]
    elif kind == 2:  # a field this schema does not have
        record[rng.choice(["extra", "embedding", "Text", "tenantId"])] = rng.choice(_ODD_VALUES)
    elif kind == 3:  # an unknown schema version
        record["schema_version"] = rng.choice([0, 2, 3, 99, -1, "1", "v1", None, 1.5, [1]])
    elif kind == 4:  # huge strings: over the text limit, over the id limit, over the attributes budget
        choice = rng.randrange(3)
        if choice == 0:
            record["text"] = rng.choice("abc xyz") * rng.randint(16_385, 300_000)
        elif choice == 1:
            record[rng.choice(["event_id", "tenant_id", "user_id", "session_id"])] = "i" * rng.randint(129, 5000)
        else:
            record["attributes"] = {"blob": "b" * rng.randint(8_200, 100_000)}
    elif kind == 5:  # NaN and infinities (json writes them as bare NaN / Infinity tokens)
        record[rng.choice(["ts", "attributes"])] = rng.choice(
            [float("nan"), float("inf"), -float("inf"), {"score": float("nan")}, {"score": float("inf")}]
        )
    else:  # not an object at all
        return json.dumps(rng.choice([[record], "just a string", 42, 3.14, None, True, [], [[[]]]])).encode()
    return json.dumps(record).encode()


def malformed(rng: random.Random) -> tuple[bytes | None, bytes | None]:
    """One record the embed stage (where records enter) must dead-letter, and its key: bad JSON, wrong types or shapes, huge
    strings, NaN, unknown schema versions, binary junk, empty and null values."""
    from memstream.streams.codec import InvalidRecord, decode_interaction

    while True:
        kind = rng.randrange(10)
        if kind < 3:
            value: bytes | None = _corrupt_json(rng)
        elif kind < 7:
            value = _wrong_shape(rng)
        elif kind < 9:
            value = bytes(rng.randrange(256) for _ in range(rng.randint(1, 2048)))  # binary junk
        else:
            value = rng.choice([b"", None, b" ", b"\x00"])
        key = rng.choice(
            [None, b"fuzz/s", bytes(rng.randrange(256) for _ in range(8)), f"k{rng.randrange(99)}".encode()]
        )
        if value is None and key is None:  # Kafka needs one of them
            key = b"tombstone"
        try:
            decode_interaction(value, max_text_chars=16_384)
        except InvalidRecord:
            return value, key
        except Exception:
            return value, key
        # it happened to be valid (e.g. a wrong-type value that is right for that field): draw again
