"""Store faults on the real broker (issue 14 part 3), with a worker process whose index and errors stages write
through the fault-injecting store (``MEMSTREAM_STORE_FAULTS__*``, agents/store/faults.py); and sessions that
belong to one user (part 5, ingest side).

* transient faults (writes cut part way, timeouts, 5xx) lose nothing: every event is indexed, the store holds
  each exactly once; events another user of the tenant sends under a session already begun are dead-lettered
  by the segment stage and never indexed;
* a permanent store error dead-letters its batch with the reason, counted in the metrics, and the worker
  goes on with the rest of the stream;
* an unexpected exception crashes the agent, and the worker exits non-zero within a bound, committing
  nothing past the failed batch: a worker started again indexes every event.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import urllib.request

import pytest

from memstream.agents.store import Collection, EdgeStore, StoreConfig
from memstream.streams.client import Publisher
from memstream.streams.codec import decode
from memstream.streams.contracts import DeadLetter, FeedbackEvent, InteractionEvent, UpdateKind
from memstream.streams.frames import decode_frame
from tests.integration.faults_util import (
    TopicReader,
    UpdateLog,
    committed_offsets,
    conversation,
    interleave,
)
from tests.integration.harness import Namespace

pytestmark = pytest.mark.integration

SEED = 20261204
T0 = 1_764_000_000.0


def _faults(rate: float, kinds: str, **more: str) -> dict[str, str]:
    return {
        "MEMSTREAM_STORE_FAULTS__RATE": str(rate),
        "MEMSTREAM_STORE_FAULTS__KINDS": kinds,
        "MEMSTREAM_STORE_FAULTS__SEED": str(SEED),
        **more,
    }


def _letters(raws: list[bytes]) -> list[tuple[DeadLetter, object]]:
    """Dead letters with the record each one holds (an event or an episode record; None if undecodable)."""
    out = []
    for raw in raws:
        letter = decode(raw, DeadLetter)
        try:
            record, _ = decode_frame(base64.b64decode(letter.raw_b64))
        except Exception:
            record = None
        out.append((letter, record))
    return out


def _feedback(n: int) -> list[FeedbackEvent]:
    return [
        FeedbackEvent(
            event_id=f"fb{i}",
            tenant_id="tenant0",
            user_id=f"user{i % 3}",
            item_id=f"item{i}",
            features={"text": f"a film about {['space', 'robots', 'cooking', 'trains'][i % 4]} number {i}"},
            prediction=0.2,
            label=1.0 if i % 2 else 0.0,
            model_version="v1",
            ts=T0 + i,
        )
        for i in range(n)
    ]


async def test_transient_store_faults_lose_nothing_and_another_users_session_events_are_refused(
    kafka_bootstrap, tmp_path
):
    rng = random.Random(SEED)
    sessions = [conversation(f"tenant{s % 2}", f"user{s}", f"s{s:04d}", 40, rng) for s in range(6)]
    stream = interleave(sessions, rng)
    half = len(stream) // 2
    begun = sorted({e.session_id: e for e in stream[:half]}.values(), key=lambda e: e.session_id)[:3]
    # another user of the tenant writes into sessions already begun (their owners go on afterwards)
    intruders = [
        InteractionEvent(
            event_id=f"intruder-{e.session_id}-{i}",
            tenant_id=e.tenant_id,
            user_id="mallory",
            session_id=e.session_id,
            ts=T0 + 10 * i,
            text=f"mallory's words {i}",
        )
        for e in begun
        for i in range(3)
    ]
    # the same session id in another tenant is another session: its own user's
    other_tenant = "tenant1" if begun[0].tenant_id == "tenant0" else "tenant0"
    elsewhere = [
        InteractionEvent(
            event_id=f"elsewhere-{i}",
            tenant_id=other_tenant,
            user_id="mallory",
            session_id=begun[0].session_id,
            ts=T0 + i,
            text=f"a session of my own {i}",
            kind="message" if i < 4 else "session_end",
        )
        for i in range(5)
    ]  # ended, as every session here is: no idle sealing races the final count
    wire = [*stream[:half], *intruders, *elsewhere, *stream[half:]]
    messages = [e for e in stream + elsewhere if e.kind == "message"]
    feedback = _feedback(24)
    ns = Namespace(kafka_bootstrap, tmp_path, **_faults(0.3, "partial,timeout,unavailable"))
    await ns.create_topics()
    log = UpdateLog()
    try:
        worker = ns.start_worker("w")
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            async with TopicReader(ns.kafka, ns.kafka.topics.dead_letters) as dead:
                async with Publisher(ns.kafka) as pub:
                    await pub.publish_many(wire)
                    await pub.publish_many(feedback)
                deadline = time.monotonic() + 300
                while (
                    len(log.ids(UpdateKind.EVENT_INDEXED)) < len(messages)
                    or len(log.ids(UpdateKind.ERROR_STORED)) < len(feedback)
                    or len(dead.values) < len(intruders)
                ):
                    assert time.monotonic() < deadline, (
                        f"{len(log.ids(UpdateKind.EVENT_INDEXED))}/{len(messages)} indexed, "
                        f"{len(log.ids(UpdateKind.ERROR_STORED))}/{len(feedback)} stored, "
                        f"{len(dead.values)} dead letters:\n{ns.logs()}"
                    )
                    assert worker.poll() is None, ns.logs()
                    log.add(await updates.poll())
                    await dead.poll(0.1)
                log.add(await updates.poll(3.0))  # anything more (an intruder indexed late) would show here
                await dead.poll(0.5)
        assert worker.poll() is None, ns.logs()
        sealed = log.sealed()
        ns.stop_workers()
        worker_log = (tmp_path / "w.log").read_text(errors="replace")
        async with EdgeStore(StoreConfig(), state_dir=tmp_path / "w") as store:
            counts = {t: await store.count(Collection.EVENTS, t) for t in ("tenant0", "tenant1")}
            episodes = {t: await store.count(Collection.EPISODES, t) for t in ("tenant0", "tenant1")}
            stored_intruders = [
                e for t in ("tenant0", "tenant1") for e in await store.events_by_ids(t, [i.event_id for i in intruders])
            ]
            errors = await store.count(Collection.ERRORS, "tenant0")
    finally:
        ns.stop_workers()

    injected = {k: worker_log.count(f"injected store fault {k} ") for k in ("partial", "timeout", "unavailable")}
    print(f"faults injected {injected}; {worker_log.count('failed (attempt')} retries")
    assert all(injected.values()), f"not every kind of fault was injected: {injected}"
    assert log.ids(UpdateKind.EVENT_INDEXED) == {e.event_id for e in messages}  # 0 lost, no intruder
    assert log.ids(UpdateKind.ERROR_STORED) == {f.event_id for f in feedback}
    assert counts == {t: sum(1 for e in messages if e.tenant_id == t) for t in counts}  # each exactly once
    assert episodes == {t: sum(1 for k in sealed if k[0] == t) for t in episodes}
    assert errors == len(feedback) and not stored_intruders
    letters = _letters(dead.values)
    assert sorted(r.event_id for _, r in letters) == sorted(e.event_id for e in intruders)
    for letter, record in letters:
        assert letter.stage == "segment" and letter.source_topic == ns.kafka.topics.embedded
        assert letter.reason == (
            f"session {record.session_id!r} of tenant {record.tenant_id!r} belongs to another user: "
            f"event {record.event_id!r} of user 'mallory' refused"
        )
    assert not log.duplicate_problems()


def _metric(port: int, name: str, stage: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    line = next((ln for ln in text.splitlines() if ln.startswith(f'{name}{{stage="{stage}"}}')), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


async def test_a_permanent_store_error_dead_letters_its_batch_and_the_worker_goes_on(kafka_bootstrap, tmp_path):
    rng = random.Random(SEED + 1)
    stream = interleave([conversation("tenant0", f"user{s}", f"p{s}", 40, rng) for s in range(4)], rng)
    messages = {e.event_id for e in stream if e.kind == "message"}
    ns = Namespace(kafka_bootstrap, tmp_path, **_faults(0.2, "permanent", MEMSTREAM_STORE_FAULTS__LIMIT="3"))
    await ns.create_topics()
    log = UpdateLog()
    try:
        worker = ns.start_worker("w")
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            async with TopicReader(ns.kafka, ns.kafka.topics.dead_letters) as dead:
                async with Publisher(ns.kafka) as pub:
                    await pub.publish_many(stream)

                def refused() -> set[str]:
                    return {r.event_id for _, r in _letters(dead.values) if isinstance(r, InteractionEvent)}

                deadline = time.monotonic() + 240
                while log.ids(UpdateKind.EVENT_INDEXED) | refused() != messages:
                    assert time.monotonic() < deadline, (
                        f"{len(log.ids(UpdateKind.EVENT_INDEXED))} indexed, {len(refused())} refused of "
                        f"{len(messages)}:\n{ns.logs()}"
                    )
                    assert worker.poll() is None, ns.logs()
                    log.add(await updates.poll())
                    await dead.poll(0.1)
                log.add(await updates.poll(2.0))
                await dead.poll(0.5)
        assert worker.poll() is None, f"the worker died:\n{ns.logs()}"
        port = ns.ports["w"]
        refused_metric = _metric(port, "memstream_store_refused_total", "index")
        dead_metric = _metric(port, "memstream_dead_letters_total", "index")
    finally:
        ns.stop_workers()

    letters = _letters(dead.values)
    indexed = log.ids(UpdateKind.EVENT_INDEXED)
    print(f"{len(indexed)} indexed, {len(refused())} events refused in {len(letters)} dead letters")
    assert letters and not indexed & refused(), "an event both indexed and dead-lettered"
    assert indexed, "nothing indexed after the refusal: the stream stopped"
    for letter, record in letters:
        assert letter.stage == "index" and letter.source_topic == ns.kafka.topics.episodes and record is not None
        assert letter.reason.startswith("store refused the batch: writing "), letter.reason
        assert "failed for good: ValueError: injected permanent store error in an upsert of " in letter.reason
    batches = {letter.reason for letter, _ in letters}
    assert 1 <= len(batches) <= 3  # the fault limit; each refused batch gives its records one reason
    assert refused_metric == dead_metric == len(letters)


async def test_a_permanent_store_error_in_the_errors_stage_dead_letters_that_feedback(kafka_bootstrap, tmp_path):
    feedback = _feedback(16)
    ns = Namespace(kafka_bootstrap, tmp_path, **_faults(1.0, "permanent", MEMSTREAM_STORE_FAULTS__LIMIT="1"))
    await ns.create_topics()
    log = UpdateLog()
    wanted = {f.event_id for f in feedback}
    try:
        worker = ns.start_worker("w", "errors,metrics")
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            async with TopicReader(ns.kafka, ns.kafka.topics.dead_letters) as dead:
                async with Publisher(ns.kafka) as pub:
                    await pub.publish_many(feedback[:8])
                    await pub.publish_many(feedback[8:])

                def refused() -> list[DeadLetter]:
                    return [decode(raw, DeadLetter) for raw in dead.values]

                def refused_ids() -> set[str]:
                    return {decode(base64.b64decode(d.raw_b64), FeedbackEvent).event_id for d in refused()}

                deadline = time.monotonic() + 120
                while log.ids(UpdateKind.ERROR_STORED) | refused_ids() != wanted:
                    assert time.monotonic() < deadline, f"{len(log.ids(UpdateKind.ERROR_STORED))} stored:\n{ns.logs()}"
                    assert worker.poll() is None, ns.logs()
                    log.add(await updates.poll())
                    await dead.poll(0.1)
        assert worker.poll() is None, f"the worker died:\n{ns.logs()}"
        refused_metric = _metric(ns.ports["w"], "memstream_store_refused_total", "errors")
    finally:
        ns.stop_workers()
    print(f"{len(log.ids(UpdateKind.ERROR_STORED))} stored, {len(refused_ids())} refused")
    assert refused() and log.ids(UpdateKind.ERROR_STORED) and not log.ids(UpdateKind.ERROR_STORED) & refused_ids()
    for letter in refused():
        assert letter.stage == "errors" and letter.source_topic == ns.kafka.topics.feedback
        assert letter.reason.startswith("store refused the batch: writing "), letter.reason
        assert "failed for good: ValueError: injected permanent store error in an upsert of " in letter.reason
    assert refused_metric == len(refused())


async def test_an_agent_crash_makes_the_worker_exit_non_zero_and_nothing_is_skipped(kafka_bootstrap, tmp_path):
    rng = random.Random(SEED + 2)
    stream = conversation("tenant0", "user0", "c0", 30, rng)
    messages = {e.event_id for e in stream if e.kind == "message"}
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    log = UpdateLog()
    try:
        worker = ns.start_worker("w", **_faults(1.0, "crash"))
        async with Publisher(ns.kafka) as pub:
            await pub.publish_many(stream)
        published = time.monotonic()
        while worker.poll() is None:
            assert time.monotonic() - published < 90, f"the worker never exited:\n{ns.logs()}"
            await asyncio.sleep(0.2)
        exited_s = time.monotonic() - published
        worker_log = (tmp_path / "w.log").read_text(errors="replace")
        committed = await committed_offsets(ns.kafka, ns.app_id, ns.kafka.topics.episodes)
        print(f"exit code {worker.returncode} {exited_s:.1f} s after publishing; committed on episodes {committed}")
        assert worker.returncode not in (0, None), worker_log
        assert "agent " in worker_log and ".index crashed (InjectedBug: injected crash in an upsert of" in worker_log
        assert not any(committed.values()), f"committed past the batch that crashed: {committed}"

        again = ns.start_worker("w")  # what an orchestrator does; no faults this time
        async with TopicReader(ns.kafka, ns.kafka.topics.memory_updates) as updates:
            deadline = time.monotonic() + 180
            while log.ids(UpdateKind.EVENT_INDEXED) != messages:
                assert time.monotonic() < deadline, f"{len(log.ids(UpdateKind.EVENT_INDEXED))} indexed:\n{ns.logs()}"
                assert again.poll() is None, ns.logs()
                log.add(await updates.poll())
    finally:
        ns.stop_workers()
