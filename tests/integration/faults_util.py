"""Helpers of the fault tests: synthetic multi-session streams, a reference segmentation, topic readers,
a private broker, and a look inside a stopped worker's embedded store."""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from memstream.agents.store import Collection, EdgeStore, StoreConfig
from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState
from memstream.streams.admin import admin_client
from memstream.streams.codec import decode
from memstream.streams.contracts import CONTROL_KINDS, EPISODE_UPDATES, InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import decode_with_vector
from memstream.streams.settings import KafkaSettings

TOPICS: dict[str, list[str]] = json.loads((Path(__file__).parents[1] / "fixtures" / "three_topics.json").read_text())

# Worker settings every fault test uses. A SIGKILLed member leaves its group only when its session times
# out (Faust's default is 60 s); 10 s keeps the tests short and is what the recovery timings assume.
# Idle sealing is driven by wall-clock time: after a fail-over a session whose partition stalled for longer
# than `idle_seal_s` would be sealed early, so the tests seal with explicit `session_end` events only.
FAULT_WORKER_ENV = {
    "BROKER_SESSION_TIMEOUT": "10",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "MEMSTREAM_SEGMENT__IDLE_SEAL_S": "3600",
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
        new = [m.value for tp in sorted(batch) for m in batch[tp]]
        self.values.extend(new)
        return new


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
    async with admin_client(kafka) as admin:
        (response,) = await admin.describe_consumer_groups([group])
    members = []
    for group_info in response.groups:
        for member in group_info[5]:  # (error, group, state, protocol type, protocol, members, …)
            raw = member[-1]  # member_assignment is every version's last member field
            if not raw:
                members.append({})
                continue
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
            members.append({topic: set(parts) for topic, parts in assignment.assignment})
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
    """What a crash-free worker makes of the embedded stream: every update it announces, every episode."""

    update_ids: set[str] = field(default_factory=set)
    sealed: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    opened: set[tuple[str, str, int]] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)


def reference(frames: list[bytes], config: SegmentationConfig) -> Reference:
    """Segment the `embedded` topic's records (per session, in partition order) with models.segmenter,
    the way the segment and index agents do, and list the updates a crash-free run announces.

    The reference takes the vectors that actually went through the pipeline, so it compares segmentation
    and its recovery, not the embedder's floating-point reproducibility across batch shapes."""
    segmenter = Segmenter(config)
    states: dict[bytes, SessionState] = defaultdict(SessionState)
    ref = Reference()
    seen: set[tuple[str, str]] = set()

    def announce(kind: UpdateKind, tenant: str, ids: list[str], salt: str = "") -> None:
        ref.update_ids.add(MemoryUpdate.make(kind, tenant, ids, 0.0, salt=salt).update_id)  # ts is not in the id

    for frame in frames:
        record, vector = decode_with_vector(frame, InteractionEvent)
        if (record.tenant_id, record.event_id) in seen:
            ref.duplicates.append(record.event_id)
            continue
        seen.add((record.tenant_id, record.event_id))
        state = states[record.key]
        announce(UpdateKind.EVENT_RECEIVED, record.tenant_id, [record.event_id])
        if record.kind in CONTROL_KINDS:
            changes = segmenter.flush(state)
        else:
            changes = segmenter.push(state, record.event_id, record.ts, vector, record.text)
            announce(UpdateKind.EVENT_INDEXED, record.tenant_id, [record.event_id])
        for change in changes:
            key = (record.tenant_id, record.session_id, change.episode_index)
            members = "|".join(change.event_ids) if change.kind == "sealed" else ""  # a sealed id covers its members
            announce(
                EPISODE_UPDATES[change.kind], record.tenant_id, [f"{record.session_id}#{change.episode_index}"], members
            )
            if change.kind == "sealed":
                ref.sealed[key] = list(change.event_ids)
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
