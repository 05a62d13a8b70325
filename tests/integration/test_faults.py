"""Fault tests on the real broker: a worker SIGKILLed mid-stream, the broker restarted, fuzzed records,
the store unavailable, tenant isolation. Each test is bounded in time; see faults_util for the settings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import replace

import hypothesis as hyp
import hypothesis.strategies as st
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from memstream.agents.settings import Settings
from memstream.agents.store import EdgeStore, StoreConfig
from memstream.deploy.kafka import LocalKafka
from memstream.deploy.kafka import process as kafka_process
from memstream.deploy.workers import free_ports
from memstream.streams.client import Publisher
from memstream.streams.codec import decode, encode
from memstream.streams.contracts import DeadLetter, FeedbackEvent, InteractionEvent, MemoryUpdate, UpdateKind
from tests.conftest import require_java
from tests.integration.faults_util import (
    FAST_FAILOVER_ENV,
    TOPICS,
    TopicReader,
    UpdateLog,
    assignment_by_client,
    committed_offsets,
    content_problems,
    conversation,
    fault_counts,
    group_assignment,
    index_replay_bound,
    interleave,
    kill_point,
    malformed,
    pipeline_replay_bound,
    reference,
    store_content,
    store_counts,
    watch_rebalance,
    where_missing,
)
from tests.integration.harness import Namespace, collect, free_port

pytestmark = pytest.mark.integration

# The issue asks for 10,000 events; on a 2-core machine that runs the broker, two pipeline workers (two ONNX
# embedders), the index worker and the test, that takes 3-4 minutes (measured: 195 s), so the default is
# 2,000 (about 45 s) to keep this file near 3-4 minutes. MEMSTREAM_FAULT_EVENTS=10000 runs the full size.
N_EVENTS = int(os.environ.get("MEMSTREAM_FAULT_EVENTS", "2000"))
N_MALFORMED = int(os.environ.get("MEMSTREAM_FAULT_MALFORMED", "1000"))
SESSION_LEN = 50
SEED = int(os.environ.get("MEMSTREAM_FAULT_SEED", "20261117"))


def _stream(n_events: int, rng: random.Random, tenants: int = 4) -> list:
    sessions = [
        conversation(f"tenant{s % tenants}", f"user{s % (tenants * 3)}", f"s{s:04d}", SESSION_LEN, rng)
        for s in range(max(1, n_events // SESSION_LEN))
    ]
    return interleave(sessions, rng)


def _against_reference(log: UpdateLog, stream: list, ref, content) -> tuple[list[str], dict[str, int]]:
    """Every check of a run against the crash-free reference `ref`, as failure lines (every violation at
    once: a crash breaks things in more than one way), and the counts (lost, identical, divergent)."""
    messages = [e for e in stream if e.kind == "message"]
    problems = []
    lost = sorted({e.event_id for e in messages} - log.ids(UpdateKind.EVENT_INDEXED))
    unreceived = sorted({e.event_id for e in stream} - log.ids(UpdateKind.EVENT_RECEIVED))
    if lost or unreceived or ref.missing:
        problems.append(
            f"lost: {len(lost)} never indexed (e.g. {lost[:5]}), {len(unreceived)} never received, "
            f"{len(ref.missing)} never embedded"
        )
    if ref.unpublished:
        problems.append(
            f"{len(ref.unpublished)} records on `embedded` that nobody published (idle seals a crash-free run "
            f"does not make), e.g. {ref.unpublished[:3]}"
        )
    missing, extra = ref.update_ids - set(log.first_seen), set(log.first_seen) - ref.update_ids
    if missing or extra:
        problems.append(
            f"updates: {len(missing)} of a crash-free run never announced, {len(extra)} announced "
            "that a crash-free run does not make"
        )
    got = log.sealed()
    differ = sorted(k for k in set(got) | set(ref.sealed) if got.get(k) != ref.sealed.get(k))
    if differ:
        k = differ[0]
        problems.append(
            f"{len(differ)} sealed episodes differ from a crash-free run, e.g. {k}: "
            f"got {got.get(k)}, want {ref.sealed.get(k)}"
        )
    members_count = Counter(i for ids in got.values() for i in ids)
    twice = sorted(i for i, n in members_count.items() if n > 1)
    never = sorted({e.event_id for e in messages} - set(members_count))
    if twice or never:
        problems.append(
            f"{len(twice)} events in more than one sealed episode slot (e.g. {twice[:5]}), "
            f"{len(never)} in none (e.g. {never[:5]})"
        )
    problems += content_problems(ref, content, Settings().recall.context_beta)
    problems += log.duplicate_problems()  # replays may repeat an announcement, never change it
    identical, divergent = log.duplicates()
    counts = {
        "lost": len(lost) + len(unreceived),
        "identical": sum(identical.values()),
        "divergent": len(divergent),
    }
    return problems, counts


async def test_sigkill_a_worker_mid_stream(kafka_bootstrap, tmp_path):
    """Two pipeline workers (embed, segment) share one consumer group; a third process runs the
    index stage and the web API in a group of its own. Why not two workers in one group with different
    `--stages`? Faust does spread each topic's partitions over the members that consume it (verified: `b`
    got partitions 0-1 of interactions/embedded, `a` 2-3 and all of `episodes`), but under
    exactly_once its transactional ids are `<app id>-<group number>-<partition>`, the group number being
    one per partition *count*: the two members then both open `…-1-0` and `…-1-1` and fence each other
    (ProducerFenced: the worker crashes). And the embedded store has a single opener. So: one stage set
    per consumer group, and the store's only writer in its own group.

    The workers run the shipped defaults: a SIGKILLed member leaves the group when its Kafka session
    times out (60 s), and idle sealing is on (agents/settings.py: its default outlasts that).

    SIGKILL pipeline worker `b` once a third of the stream is indexed: `a` takes over its partitions and
    restores its sessions from the changelog. SIGKILL the index worker at two thirds and restart it on the
    same state dir: its store reopens from its WAL and the uncommitted batches are replayed. At the end the
    store holds what a crash-free run stores (models.segmenter over the same vectors and the published
    records: every event's fields, vector, context vector and episode, every sealed episode's members and
    centroid), every update of that run was announced and none other, no announcement repeats with other
    content, and the identical repeats are no more than at least once allows: the killed workers'
    uncommitted windows at their kills, and the survivor's at the rebalance b's death causes (the workers are
    in the group before the stream is published, so no start-up rebalance replays anything)."""
    rng = random.Random(SEED)
    stream = _stream(N_EVENTS, rng)
    messages = [e for e in stream if e.kind == "message"]
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    t = ns.kafka.topics
    index_group = f"{ns.app_id}-index"
    index_env = {"MEMSTREAM_WORKER__APP_ID": index_group}
    log = UpdateLog()
    timings: dict[str, float] = {}

    def indexed() -> int:
        return len(log.ids(UpdateKind.EVENT_INDEXED))

    try:
        a = ns.start_worker("a", "embed,segment", BROKER_CLIENT_ID="fault-a")
        b = ns.start_worker("b", "embed,segment", BROKER_CLIENT_ID="fault-b")
        store = ns.start_worker("store", "index,web", **index_env)
        deadline = time.monotonic() + 120  # both in the group first: no start-up rebalance replays anything
        while sum(1 for m in await group_assignment(ns.kafka, ns.app_id) if m.get(t.interactions)) < 2:
            assert time.monotonic() < deadline, f"the two workers never shared the partitions:\n{ns.logs()}"
            assert a.poll() is None and b.poll() is None, f"a worker died:\n{ns.logs()}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # both through their recovery
        async with TopicReader(ns.kafka, t.memory_updates) as updates:

            async def until(done, what: str, alive, fatal: bool = True) -> None:
                while not done():
                    if time.monotonic() > deadline:
                        lost = sorted({e.event_id for e in messages} - log.ids(UpdateKind.EVENT_INDEXED))
                        if fatal:
                            where = await where_missing(ns.kafka, lost[:10], [ns.app_id, index_group])
                        assert not fatal, (
                            f"timed out waiting for {what}: {indexed()} indexed, never indexed "
                            f"{lost[:10]}:\n{where}\n{ns.logs()}"
                        )
                        return
                    for proc in alive:
                        assert proc.poll() is None, f"a worker died:\n{ns.logs()}"
                    log.add(await updates.poll())

            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(stream)
            started = time.monotonic()
            deadline = started + 180 + 0.06 * N_EVENTS  # 300 s at 2,000 events (~110 s when all is well)
            await until(lambda: indexed() >= len(messages) // 3, "a third indexed", [a, b, store])
            members = await assignment_by_client(ns.kafka, ns.app_id)
            b.send_signal(signal.SIGKILL)
            b.wait(10)
            killed_b, at_kill_b = time.monotonic(), indexed()
            kill_b = await kill_point(ns.kafka, ns.app_id, [t.interactions, t.embedded], seen=[t.memory_updates])
            rebalance = asyncio.create_task(
                watch_rebalance(ns.kafka, ns.app_id, "fault-b", [t.interactions, t.embedded], [t.memory_updates])
            )
            await until(lambda: indexed() >= 2 * len(messages) // 3, "two thirds indexed", [a, store])
            store.send_signal(signal.SIGKILL)
            store.wait(10)
            killed_store, at_kill_store = time.monotonic(), indexed()
            kill_store = await kill_point(ns.kafka, index_group, [t.episodes])
            store = ns.start_worker("store", "index,web", **index_env)
            await until(
                lambda: indexed() >= len(messages) and len(log.ids(UpdateKind.EVENT_RECEIVED)) >= len(stream),
                "everything indexed",
                [a, store],
            )
            done = time.monotonic()
            survivors = await asyncio.wait_for(rebalance, 60)
            timings = {
                "publish_to_kill_b_s": round(killed_b - started, 1),
                "kill_b_to_all_indexed_s": round(done - killed_b, 1),
                "kill_store_to_all_indexed_s": round(done - killed_store, 1),
                "total_s": round(done - started, 1),
            }
            async with TopicReader(ns.kafka, t.embedded) as embedded:
                while (await embedded.poll(1.0) or len(embedded.values) < len(stream)) and time.monotonic() < deadline:
                    pass
                frames = embedded.values
            ref = reference(frames, Settings().segmentation, stream)
            deadline = min(deadline, time.monotonic() + 30)  # a missing update shows up in the checks below
            await until(lambda: ref.update_ids <= set(log.first_seen), "every update", [a, store], fatal=False)
            log.add(await updates.poll(2.0))  # anything extra would be a divergence: give it time to show
        print(f"pipeline group before the kill: {members}")
        print(
            f"indexed at kill of b: {at_kill_b}, at kill of the store: {at_kill_store} of {len(messages)}; "
            f"timings: {timings}"
        )
        holding = {k: v.get(t.interactions, set()) for k, v in members.items()}
        assert sum(1 for parts in holding.values() if parts) == 2, (
            f"both pipeline workers should hold interactions partitions before the kill: {members}"
        )
        b_partitions = set().union(*(parts for k, parts in holding.items() if k.startswith("fault-b|")))
        a_partitions = set().union(*(parts for k, parts in holding.items() if k.startswith("fault-a|")))
        assert b_partitions and a_partitions, f"each worker should hold partitions: {members}"
        assert len(frames) >= len(stream)
        ns.stop_workers()
        content = await store_content(tmp_path / "store")

        # Replays on internal topics are allowed (a stage that crashes between sending and committing sends
        # again); what a stage must not do is apply one twice. The reference keeps each event's first copy.
        print(f"{len(ref.duplicates)} records on `embedded` replay an event already there (read_committed)")
        problems, counts = _against_reference(log, stream, ref, content)
        # At least once, what may be processed twice: the killed b's uncommitted window at its kill, the
        # surviving a's at the rebalance that b's death caused (a rebalance revokes every partition), and the
        # killed index worker's at its kill. The identical replays counted must fit in them.
        bound_b, how_b = await pipeline_replay_bound(ns.kafka, kill_b, b_partitions, ref)
        bound_a, how_a = await pipeline_replay_bound(ns.kafka, survivors, a_partitions, ref)
        bound_store, how_store = index_replay_bound(ns.kafka, kill_store)
        bound = bound_b + bound_a + bound_store
        print(
            f"identical replays allowed: b (killed) on partitions {sorted(b_partitions)}: {how_b}; a (at the "
            f"rebalance) on {sorted(a_partitions)}: {how_a}; index worker (killed): {how_store}"
        )
        fault_counts("sigkill", SEED, counts["lost"], counts["identical"], counts["divergent"], bound)
        if counts["identical"] > bound:
            problems.append(
                f"{counts['identical']} identical replays, more than the {bound} that the uncommitted windows "
                f"allow ({bound_b} for b at its kill, {bound_a} for a at the rebalance, {bound_store} for the "
                "index worker at its kill)"
            )
        assert not problems, "\n".join(problems)
    finally:
        ns.stop_workers()
        print(ns.logs()[-6000:])


async def test_takeover_of_partitions_nothing_was_committed_on(kafka_bootstrap, tmp_path):
    """Two pipeline workers hold half the partitions each; a stream arrives and `b` is SIGKILLed at once,
    before it commits anything: `a` takes over partitions that have a backlog and no committed offset, and
    every event is indexed. Where faust drops the first batch it fetches from such a partition (its flow is
    held for the seek after the rebalance), seeking "to the committed offset" used to leave the partition
    past that batch, which was never processed (agents.faust_compat.ConsumerThread). Whether faust drops a
    batch there depends on timing: a script doing the same lost two whole partitions in 3 runs of 4 before
    the fix; tests/integration/test_consumer_seek.py checks the seek itself."""
    rng = random.Random(SEED + 5)
    stream = _stream(400, rng)
    messages = [e for e in stream if e.kind == "message"]
    ns = Namespace(kafka_bootstrap, tmp_path, **FAST_FAILOVER_ENV)
    await ns.create_topics()
    index_env = {"MEMSTREAM_WORKER__APP_ID": f"{ns.app_id}-index"}
    log = UpdateLog()
    try:
        store = ns.start_worker("store", "index,web", **index_env)
        a = ns.start_worker("a", "embed,segment")
        b = ns.start_worker("b", "embed,segment")
        deadline = time.monotonic() + 120
        while sum(1 for m in await group_assignment(ns.kafka, ns.app_id) if m.get(ns.kafka.topics.interactions)) < 2:
            assert time.monotonic() < deadline, f"the two workers never shared the partitions:\n{ns.logs()}"
            assert a.poll() is None and b.poll() is None, f"a worker died:\n{ns.logs()}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(3)  # both through their recovery
        async with Publisher(ns.kafka) as pub:
            await pub.publish_many(stream)
        await asyncio.sleep(0.3)  # b has fetched, not committed (its embedder loads on its first batch)
        b.send_signal(signal.SIGKILL)
        b.wait(10)
        committed = await committed_offsets(ns.kafka, ns.app_id, ns.kafka.topics.interactions)
        print(f"interactions offsets committed when b was killed: {committed}")
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            deadline = time.monotonic() + 180
            while len(log.ids(UpdateKind.EVENT_INDEXED)) < len(messages):
                if time.monotonic() > deadline:
                    lost = sorted({e.event_id for e in messages} - log.ids(UpdateKind.EVENT_INDEXED))
                    where = await where_missing(ns.kafka, lost[:6], [ns.app_id, index_env["MEMSTREAM_WORKER__APP_ID"]])
                    pytest.fail(f"{len(lost)} of {len(messages)} never indexed, e.g. {lost[:6]}:\n{where}\n{ns.logs()}")
                assert a.poll() is None and store.poll() is None, f"a worker died:\n{ns.logs()}"
                log.add(await updates.poll())
            log.add(await updates.poll(2.0))  # a divergent replay would show here
        identical, divergent = log.duplicates()
        fault_counts("takeover", SEED, 0, sum(identical.values()), len(divergent))
        assert not log.duplicate_problems()
    finally:
        ns.stop_workers()


def _edge_valid(tenant: str, session: str, t0: float) -> list[InteractionEvent]:
    """Valid events at the edges of the contract: every one must go all the way to the store."""
    texts = ["", "x" * 16_384, "nul \x00 inside", "emoji 🚀🌌 and ünïcödé", "\u202etext in reverse", "  ", "a"]
    return [
        InteractionEvent(
            event_id=f"{session}-edge{i}",
            tenant_id=tenant,
            user_id="edge-user",
            session_id=session,
            ts=t0 + i,
            text=text,
            attributes={"i": i, "f": 0.5, "b": True, "n": None, "s": "v" * 100},
        )
        for i, text in enumerate(texts)
    ]


async def test_fuzzed_malformed_records_are_dead_lettered(kafka_bootstrap, tmp_path):
    """1,000 malformed records (bad JSON, wrong types and shapes, huge strings, NaN, unknown schema versions,
    binary junk, empty and null values; seeded) interleaved with valid events: each malformed one is in
    `dead-letters` with a reason and its exact bytes, no worker crashes, every valid event is indexed."""
    rng = random.Random(SEED + 3)
    bad = [malformed(rng) for _ in range(N_MALFORMED)]
    sessions = [conversation("fuzz", f"u{s}", f"fz{s}", 40, rng) for s in range(6)]
    sessions.append(
        [*_edge_valid("fuzz", "fzedge", 1_764_000_000.0), *conversation("fuzz", "edge-user", "fzedge", 0, rng)]
    )  # + its session_end
    valid = interleave(sessions, rng)
    # valid and malformed at random positions, each session's events in their order
    is_bad = [True] * len(bad) + [False] * len(valid)
    rng.shuffle(is_bad)
    bad_it, valid_it = iter(bad), iter((encode(e), e.key) for e in valid)
    wire = [next(bad_it) if b else next(valid_it) for b in is_bad]
    messages = [e for e in valid if e.kind == "message"]

    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    log = UpdateLog()
    worker = ns.start_worker("w")
    try:
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            producer = AIOKafkaProducer(**ns.kafka.client_kwargs(), acks="all", enable_idempotence=True)
            await producer.start()
            try:
                futures = [await producer.send(ns.kafka.topics.interactions, v, key=k) for v, k in wire]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()
            deadline = time.monotonic() + 180
            while len(log.ids(UpdateKind.EVENT_INDEXED)) < len(messages) or len(log.sealed()) == 0:
                assert time.monotonic() < deadline, f"{len(log.ids(UpdateKind.EVENT_INDEXED))} indexed:\n{ns.logs()}"
                assert worker.poll() is None, f"the worker died:\n{ns.logs()}"
                log.add(await updates.poll())
            sealed_ids = lambda: {i for ids in log.sealed().values() for i in ids}  # noqa: E731
            while not sealed_ids() >= {e.event_id for e in messages} and time.monotonic() < deadline:
                log.add(await updates.poll())
        letters = await collect(ns.kafka, ns.kafka.topics.dead_letters, lambda v: len(v) >= len(bad), timeout=60)
        await asyncio.sleep(2)
        letters = await collect(ns.kafka, ns.kafka.topics.dead_letters, lambda v: False, timeout=3)
        assert worker.poll() is None, f"the worker died:\n{ns.logs()}"
    finally:
        ns.stop_workers()
        print(ns.logs()[-3000:])

    decoded = [decode(v, DeadLetter) for v in letters]
    assert len(decoded) == len(bad), f"{len(decoded)} dead letters for {len(bad)} malformed records"
    assert all(d.reason and d.stage == "embed" and d.source_topic == ns.kafka.topics.interactions for d in decoded)
    assert len({(d.partition, d.offset) for d in decoded}) == len(bad)
    # each malformed record is identified by its hash and size; its bytes are kept (a prefix when huge)
    assert Counter((d.raw_sha256, d.raw_size) for d in decoded) == Counter(
        (hashlib.sha256(v or b"").hexdigest(), len(v or b"")) for v, _ in bad
    )
    by_hash = {hashlib.sha256(v or b"").hexdigest(): v or b"" for v, _ in bad}
    for d in decoded:
        kept = base64.b64decode(d.raw_b64)
        assert kept == by_hash[d.raw_sha256] if not d.raw_truncated else by_hash[d.raw_sha256].startswith(kept)
    assert log.ids(UpdateKind.EVENT_RECEIVED) == {e.event_id for e in valid}
    assert log.ids(UpdateKind.EVENT_INDEXED) == {e.event_id for e in messages}
    assert {i for ids in log.sealed().values() for i in ids} == {e.event_id for e in messages}


async def test_record_at_the_broker_size_limit_is_dead_lettered(kafka_bootstrap, tmp_path):
    """The largest record the broker takes (1 MB of junk) is still dead-lettered with a reason: its dead letter
    (base64 of the raw bytes, a third larger) must not be lost because it is too big to send."""
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    worker = ns.start_worker("w", "embed")
    huge = b"\x00junk" * 200_000  # 1,000,000 bytes
    try:
        async with Publisher(ns.kafka) as pub:
            await pub.publish_raw(ns.kafka.topics.interactions, huge, key=b"big/1")
            await pub.publish_raw(ns.kafka.topics.interactions, b"{small", key=b"big/1")  # same partition, after it
        letters = await collect(ns.kafka, ns.kafka.topics.dead_letters, lambda v: len(v) >= 2, timeout=30)
        alive = worker.poll() is None
    finally:
        ns.stop_workers()
        logs = ns.logs()
    decoded = sorted((decode(v, DeadLetter) for v in letters), key=lambda d: d.offset)
    assert alive, logs
    assert "Crashed reason" not in logs, f"an agent crashed:\n{logs[-3000:]}"
    assert [d.offset for d in decoded] == [0, 1], (
        f"dead letters for offsets {[d.offset for d in decoded]}: {logs[-3000:]}"
    )
    assert decoded[0].reason and huge.startswith(base64.b64decode(decoded[0].raw_b64))


# Tenants whose names are prefixes, case variants and look-alikes of each other; users, sessions and event
# ids that repeat across tenants (ids are unique only within a tenant).
ISO_TENANTS = ["acme", "acme2", "Acme", "acme.eu", "acme-eu", "globex", "t:1"]
ISO_USERS = ["alice", "bob", "u-1"]


def _iso_stream(rng: random.Random) -> tuple[list[InteractionEvent], list[FeedbackEvent]]:
    sessions, feedback = [], []
    for t, tenant in enumerate(ISO_TENANTS):
        for u, user in enumerate(rng.sample(ISO_USERS, 2)):
            events = conversation(tenant, user, f"s{u}", 16, rng)  # same session and event ids in every tenant
            sessions.append(
                [
                    e.model_copy(update={"text": f"{e.text} [{tenant}/{user}]", "ts": e.ts + t})
                    if e.kind == "message"
                    else e
                    for e in events
                ]
            )
            feedback += [
                FeedbackEvent(
                    event_id=f"fb-{user}-{i}",
                    tenant_id=tenant,
                    user_id=user,
                    item_id=f"item{i}",
                    features={"text": f"item {i} for {user}"},
                    prediction=0.3,
                    label=float(i % 2),
                    model_version="m1",
                    ts=1_764_000_000.0 + i,
                )
                for i in range(3)
            ]
    return interleave(sessions, rng), feedback


def _post(port: int, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_tenant_isolation_and_forget(kafka_bootstrap, tmp_path):
    """Recall never returns another tenant's (or, with user_id, another user's) memory, for any query,
    tenant, user, session and k (hypothesis, over look-alike tenants that share user, session and event
    ids); /get/ reads only the tenant's own events; /forget/ removes every point of one user of one tenant,
    announces `forgotten`, and leaves the same user in other tenants untouched."""
    rng = random.Random(SEED + 5)
    stream, feedback = _iso_stream(rng)
    messages = [e for e in stream if e.kind == "message"]
    own = {(e.tenant_id, e.event_id): e for e in messages}
    ns = Namespace(kafka_bootstrap, tmp_path)
    port = free_port()
    log = UpdateLog()

    async def publish_and_wait(worker) -> None:
        await ns.create_topics()
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many([*stream, *feedback])
            deadline = time.monotonic() + 180
            want_sealed = {(e.tenant_id, e.event_id) for e in messages}
            while {
                (u.tenant_id, i) for u in log.all if u.kind == UpdateKind.EPISODE_SEALED for i in u.payload["event_ids"]
            } < want_sealed or len(
                {(u.tenant_id, u.ids[0]) for u in log.all if u.kind == UpdateKind.ERROR_STORED}
            ) < len(feedback):
                assert time.monotonic() < deadline, f"not all indexed:\n{ns.logs()}"
                assert worker.poll() is None, ns.logs()
                log.add(await updates.poll())
            log.add(await updates.poll(1.0))

    async def wait_forgotten(tenant: str, user: str) -> MemoryUpdate:
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for raw in await updates.poll():
                    update = decode(raw, MemoryUpdate)
                    if update.kind == UpdateKind.FORGOTTEN and (update.tenant_id, update.ids) == (tenant, [user]):
                        return update
        raise AssertionError(f"no `forgotten` update for {tenant}/{user}")

    try:
        worker = ns.start_worker("w", MEMSTREAM_WORKER__WEB_PORT=str(port))
        asyncio.run(publish_and_wait(worker))
        assert _post(port, "/recall/", {"query": "x", "tenant_id": "acme"})[0] == 200

        @hyp.settings(
            max_examples=int(os.environ.get("MEMSTREAM_FAULT_EXAMPLES", "60")),
            deadline=None,
            derandomize=True,
            suppress_health_check=list(hyp.HealthCheck),
        )
        @hyp.given(
            tenant=st.sampled_from([*ISO_TENANTS, "ACME", "acme3", "nobody"]),
            user=st.none() | st.sampled_from(ISO_USERS),
            session=st.none() | st.sampled_from(["s0", "s1"]),
            query=st.sampled_from([t for block in TOPICS.values() for t in block]) | st.text(min_size=1, max_size=40),
            k_s=st.integers(1, 20),
            k_c=st.integers(0, 3),
            mode=st.sampled_from(["events", "episodes"]),
            budget=st.integers(1, 60),
            turns=st.integers(0, 3),
        )
        def recall_stays_in_scope(tenant, user, session, query, k_s, k_c, mode, budget, turns):
            body = {
                "query": query,
                "tenant_id": tenant,
                "k_s": k_s,
                "k_c": k_c,
                "mode": mode,
                "budget": budget,
                "episode_turns": turns,
            }
            body |= {"user_id": user} if user else {}
            body |= {"session_id": session} if session else {}
            status, answer = _post(port, "/recall/", body)
            assert status == 200, body
            if mode == "events":
                assert len(answer["events"]) <= budget
                returned.update(events=len(answer["events"]))
                for event in answer["events"]:
                    assert event["tenant_id"] == tenant
                    assert user is None or event["user_id"] == user
                    assert session is None or event["session_id"] == session
                    mine = own.get((tenant, event["event_id"]))
                    assert mine is not None and event["text"] == mine.text, (tenant, event)
                return
            returned.update(episodes=len(answer["episodes"]))
            for episode in answer["episodes"]:
                assert episode["tenant_id"] == tenant
                assert user is None or episode["user_id"] == user
                assert session is None or episode["session_id"] == session
                for event in episode["events"]:
                    mine = own.get((tenant, event["event_id"]))
                    assert mine is not None and event["text"] == mine.text, (tenant, event)

        returned: Counter = Counter()
        recall_stays_in_scope()
        assert returned["episodes"] > 0 and returned["events"] > 0, "no example recalled anything: vacuous"

        # /get/ with ids every tenant uses: each tenant reads only its own
        ids = sorted({e.event_id for e in messages})
        for tenant in [*ISO_TENANTS, "ACME"]:
            status, answer = _post(port, "/get/", {"tenant_id": tenant, "event_ids": ids})
            assert status == 200
            assert {(e["tenant_id"], e["event_id"], e["text"]) for e in answer["events"]} == {
                (t, i, e.text) for (t, i), e in own.items() if t == tenant
            }

        # forget one user of one tenant; the same user name elsewhere is untouched
        victims = rng.sample(sorted({(e.tenant_id, e.user_id) for e in messages}), 2)
        for tenant, user in victims:
            mine = [e for e in messages if (e.tenant_id, e.user_id) == (tenant, user)]
            episodes = {
                (u.session_id, u.payload["episode_index"])
                for u in log.all
                if u.kind == UpdateKind.EPISODE_SEALED and (u.tenant_id, u.user_id) == (tenant, user)
            }
            errors = {
                u.ids[0]
                for u in log.all
                if u.kind == UpdateKind.ERROR_STORED and (u.tenant_id, u.user_id) == (tenant, user)
            }
            status, answer = _post(port, "/forget/", {"tenant_id": tenant, "user_id": user})
            assert status == 200
            assert answer["removed"] == len(mine) + len(episodes) + len(errors), (tenant, user, answer)
            update = asyncio.run(wait_forgotten(tenant, user))
            assert update.payload["points_removed"] == answer["removed"]
            assert (
                _post(port, "/get/", {"tenant_id": tenant, "event_ids": [e.event_id for e in mine]})[1]["events"] == []
            )
            for query in ("the telescope and the stars", "bread and oven", "the match and the goal"):
                status, answer = _post(
                    port, "/recall/", {"query": query, "tenant_id": tenant, "k_s": 20, "mode": "episodes"}
                )
                assert all(ep["user_id"] != user for ep in answer["episodes"])
                status, answer = _post(port, "/recall/", {"query": query, "tenant_id": tenant, "budget": 100})
                assert all(e["user_id"] != user for e in answer["events"])
            for other in ISO_TENANTS:  # everybody else still has everything
                kept = [e for e in messages if e.tenant_id == other and (other, e.user_id) not in victims]
                got = _post(port, "/get/", {"tenant_id": other, "event_ids": [e.event_id for e in kept]})[1]["events"]
                assert len(got) == len(kept), (other, len(got), len(kept))
        assert worker.poll() is None
    finally:
        ns.stop_workers()
        print(ns.logs()[-3000:])


BROKER_DOWN_S = float(os.environ.get("MEMSTREAM_FAULT_BROKER_DOWN_S", "10"))
OUTAGE_S = float(os.environ.get("MEMSTREAM_FAULT_OUTAGE_S", "30"))


async def test_store_unavailable_then_back(kafka_bootstrap, tmp_path):
    """The store cannot be opened for about OUTAGE_S seconds (the test holds the edge store's single-opener
    lock: what a store that will not open looks like to the worker). Meanwhile the index agent retries with
    backoff, announces nothing and commits no `episodes` offset, and neither does a worker stopped in the
    middle of the outage (SIGTERM, SIGKILL after 10 s) nor its replacement. When the store is released the
    worker catches up and every event is stored once."""
    rng = random.Random(SEED + 4)
    stream = _stream(300, rng, tenants=2)
    messages = [e for e in stream if e.kind == "message"]
    ns = Namespace(kafka_bootstrap, tmp_path, **FAST_FAILOVER_ENV)
    await ns.create_topics()
    log = UpdateLog()
    worker_log = tmp_path / "w.log"

    def retries() -> list[str]:
        return [ln for ln in worker_log.read_text(errors="replace").splitlines() if "failed (attempt" in ln]

    blocker = EdgeStore(StoreConfig(), state_dir=tmp_path / "w")
    await blocker.open()  # the worker's store, taken before the worker starts
    try:
        worker = ns.start_worker("w")
        outage_started = time.monotonic()
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(stream)
            async with TopicReader(ns.kafka, ns.kafka.topics.episodes) as episodes:
                while len(episodes.values) < len(messages):  # segmented and forwarded: only the store is missing
                    assert time.monotonic() - outage_started < 120, ns.logs()
                    assert worker.poll() is None, ns.logs()
                    await episodes.poll()
            log.add(await updates.poll(3.0))  # a commit interval (2.8 s) passes
            assert not log.ids(UpdateKind.EVENT_INDEXED), "announced while the store was down"
            before_stop = await committed_offsets(ns.kafka, ns.app_id, ns.kafka.topics.episodes)
            stop_started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(10)
                stopped_by = "SIGTERM"
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
                stopped_by = "SIGKILL after 10 s"
            stop_s = time.monotonic() - stop_started
            after_stop = await committed_offsets(ns.kafka, ns.app_id, ns.kafka.topics.episodes)
            tried_before = len(retries())
            worker = ns.start_worker("w")
            while time.monotonic() - outage_started < OUTAGE_S or len(retries()) == tried_before:
                assert time.monotonic() - outage_started < OUTAGE_S + 90, "the new worker never tried the store"
                assert worker.poll() is None, ns.logs()
                log.add(await updates.poll())
            assert not log.ids(UpdateKind.EVENT_INDEXED), "announced while the store was down"
            after_restart = await committed_offsets(ns.kafka, ns.app_id, ns.kafka.topics.episodes)
            await blocker.close()
            released = time.monotonic()
            deadline = released + 120
            while len(log.ids(UpdateKind.EVENT_INDEXED)) < len(messages):
                assert time.monotonic() < deadline, f"{len(log.ids(UpdateKind.EVENT_INDEXED))} indexed:\n{ns.logs()}"
                assert worker.poll() is None, ns.logs()
                log.add(await updates.poll())
            catch_up = time.monotonic() - released
        ns.stop_workers()
        counts = await store_counts(tmp_path / "w", {e.tenant_id for e in messages})
    finally:
        await blocker.close()
        ns.stop_workers()
    print(
        f"outage {released - outage_started:.1f} s; caught up {catch_up:.1f} s after the store came back; "
        f"stop during the outage: {stopped_by} ({stop_s:.1f} s); committed `episodes` offsets before the stop "
        f"{before_stop}, after it {after_stop}, after the restart {after_restart}; {len(retries())} retries"
    )
    for name, offsets in [
        ("before the stop", before_stop),
        ("after the stop", after_stop),
        ("after the restart", after_restart),
    ]:
        assert not any(offsets.values()), f"`episodes` offsets committed past unwritten data {name}: {offsets}"
    delays = [float(ln.rsplit("retrying in ", 1)[1].rstrip("s ")) for ln in retries() if "retrying in " in ln]
    assert len(delays) >= 4 and delays[1] > delays[0], f"no backoff: {delays}"
    for tenant in counts:
        assert counts[tenant][0] == sum(1 for e in messages if e.tenant_id == tenant)


@pytest.fixture
def private_broker(tmp_path_factory):
    """A second, private broker on free ports with its own data dir: stopping it disturbs nobody."""
    require_java()  # skips on a developer machine without Java, fails in CI
    port, controller_port = free_ports(2)
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka-private"), port=port, controller_port=controller_port, progress=False
    )
    broker.up(timeout=120)
    try:
        yield broker
    finally:
        broker.down()


PUBLISHER_MAX_PENDING = 64


async def test_broker_sigkill_mid_stream(private_broker, tmp_path):
    """SIGKILL the broker while the worker is busy with the first two thirds of a stream, and keep
    publishing the rest while it is down: the publisher blocks (its bounded buffer is full, nothing is
    acknowledged, its back-pressure counters move) without dropping anything. Start the broker again: the
    publisher finishes, the worker survives, and in the end the accounting is exact against a crash-free
    run: every event received and indexed once or replayed identically, the same sealed episodes, the
    same store content, no announcement repeated with other content."""
    rng = random.Random(SEED + 2)
    stream = _stream(int(os.environ.get("MEMSTREAM_FAULT_BROKER_EVENTS", "600")), rng, tenants=2)
    first = 2 * len(stream) // 3
    messages = [e for e in stream if e.kind == "message"]
    first_messages = {e.event_id for e in stream[:first] if e.kind == "message"}
    ns = Namespace(private_broker.bootstrap, tmp_path)
    await ns.create_topics()
    t = ns.kafka.topics
    log = UpdateLog()
    worker = ns.start_worker("w")
    try:
        async with Publisher(ns.kafka, max_pending=PUBLISHER_MAX_PENDING) as pub:
            await pub.publish_many(stream[:first])
            before = replace(pub.stats)
            async with TopicReader(ns.kafka, t.memory_updates) as updates:
                deadline = time.monotonic() + 180
                while len(log.ids(UpdateKind.EVENT_INDEXED)) < len(first_messages) // 6:
                    assert time.monotonic() < deadline, ns.logs()
                    assert worker.poll() is None, ns.logs()
                    log.add(await updates.poll(0.1))
            at_kill = len(log.ids(UpdateKind.EVENT_INDEXED))
            pid = private_broker._running_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed_at_ms = time.time() * 1000
            down_started = time.monotonic()
            while kafka_process.pid_alive(pid):
                assert time.monotonic() - down_started < 10, "the broker survived SIGKILL"
                await asyncio.sleep(0.05)
            publishing = asyncio.create_task(pub.publish_many(stream[first:]))  # while the broker is down
            await asyncio.sleep(BROKER_DOWN_S)
            down = replace(pub.stats)
            assert not publishing.done(), (
                f"publishing returned while the broker was down: {publishing.exception() or publishing.result()}"
            )
            assert worker.poll() is None, f"the worker died while the broker was down:\n{ns.logs()}"
            await asyncio.to_thread(private_broker.up, 120)
            up_at = time.monotonic()
            published = await asyncio.wait_for(publishing, 180)
            after = replace(pub.stats)
        print(
            f"publisher before the kill {before}; after {BROKER_DOWN_S} s down {down}; "
            f"{time.monotonic() - up_at:.1f} s after the broker was back {after}"
        )
        assert (before.acknowledged, before.pending) == (first, 0)
        assert down.acknowledged == first, "acknowledged while the broker was dead?"
        assert down.pending == PUBLISHER_MAX_PENDING and down.blocked and down.waits > before.waits, (
            f"no back-pressure reported while the broker was down: {down}"
        )
        assert published == len(stream) - first
        assert (after.sent, after.acknowledged, after.pending, after.failed) == (len(stream), len(stream), 0, 0)

        log.all.clear()  # read everything again from the restarted broker
        log.first_seen.clear()
        indexed_after_kill: set[str] = set()
        async with TopicReader(ns.kafka, t.memory_updates) as updates:
            deadline = time.monotonic() + 240
            while len(log.ids(UpdateKind.EVENT_INDEXED)) < len(messages) or len(
                log.ids(UpdateKind.EVENT_RECEIVED)
            ) < len(stream):
                assert time.monotonic() < deadline, f"{len(log.ids(UpdateKind.EVENT_INDEXED))} indexed:\n{ns.logs()}"
                assert worker.poll() is None, f"the worker died after the broker restart:\n{ns.logs()}"
                log.add(await updates.poll())
            caught_up = time.monotonic() - up_at
            async with TopicReader(ns.kafka, t.embedded) as embedded:
                while (await embedded.poll(1.0) or len(embedded.values) < len(stream)) and time.monotonic() < deadline:
                    pass
            ref = reference(embedded.values, Settings().segmentation, stream)
            wait_until = min(deadline, time.monotonic() + 30)
            while not ref.update_ids <= set(log.first_seen) and time.monotonic() < wait_until:
                log.add(await updates.poll())
            log.add(await updates.poll(2.0))  # anything extra would be a divergence: give it time to show
            indexed_before_kill: set[str] = set()
            for raw, ms in zip(updates.values, updates.timestamps):  # the records' CreateTime: when announced
                update = decode(raw, MemoryUpdate)
                if update.kind == UpdateKind.EVENT_INDEXED:
                    (indexed_after_kill if ms > killed_at_ms else indexed_before_kill).add(update.ids[0])
            indexed_after_kill = (indexed_after_kill & first_messages) - indexed_before_kill
        print(
            f"indexed when the broker was killed: {at_kill}/{len(messages)} (published then: {len(first_messages)}); "
            f"{len(indexed_after_kill)} of those first indexed after the restart; broker down "
            f"{up_at - down_started:.1f} s; all indexed {caught_up:.1f} s after it was back"
        )
        assert 0 < at_kill < len(first_messages) and indexed_after_kill, "the kill was not mid-stream"
        ns.stop_workers()
        content = await store_content(tmp_path / "w")
        problems, counts = _against_reference(log, stream, ref, content)
        fault_counts("broker-sigkill", SEED, counts["lost"], counts["identical"], counts["divergent"])
        assert not problems, "\n".join(problems)
    finally:
        ns.stop_workers()
        print(ns.logs()[-4000:])
