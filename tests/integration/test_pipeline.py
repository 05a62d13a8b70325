"""The whole pipeline on the real broker: embed, segment (state survives a restart), index, recall."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from memstream.models.embedder import Embedder
from memstream.streams.client import Publisher, subscribe
from memstream.streams.contracts import InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import decode_with_vector
from tests.integration.harness import Namespace, collect, free_port

pytestmark = pytest.mark.integration

TOPICS = json.loads((Path(__file__).parents[1] / "fixtures" / "three_topics.json").read_text())


def session_events(tenant: str, session: str) -> list[InteractionEvent]:
    texts = [t for block in TOPICS.values() for t in block]
    return [
        InteractionEvent(
            event_id=f"{session}-{i:03d}",
            tenant_id=tenant,
            user_id="u1",
            session_id=session,
            ts=1_764_000_000 + 30 * i,
            text=text,
        )
        for i, text in enumerate(texts)
    ]


def end_event(last: InteractionEvent) -> InteractionEvent:
    return last.model_copy(
        update={"event_id": f"{last.session_id}-end", "kind": "session_end", "text": "", "ts": last.ts + 1}
    )


async def wait_for(updates, seen: list[MemoryUpdate], done, timeout: float, workers=()) -> None:
    deadline = time.monotonic() + timeout
    while not done(seen):
        if time.monotonic() > deadline:
            from collections import Counter

            raise AssertionError(f"timed out; saw {Counter(u.kind for u in seen)}; sealed {sealed(seen)}")
        for proc in workers:
            assert proc.poll() is None, "a worker died"
        seen.extend(await updates.poll(timeout=0.5))


def indexed(seen: list[MemoryUpdate]) -> set[str]:
    return {u.ids[0] for u in seen if u.kind == UpdateKind.EVENT_INDEXED}


def sealed(seen: list[MemoryUpdate]) -> dict[int, list[str]]:
    return {u.payload["episode_index"]: u.payload["event_ids"] for u in seen if u.kind == UpdateKind.EPISODE_SEALED}


async def test_embedded_topic_carries_the_embedders_vectors(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    ns.start_worker(stages="embed")
    events = session_events("t1", "s1")[:10]
    try:
        async with Publisher(ns.kafka) as pub:
            await pub.publish_many(events)
        frames = await collect(ns.kafka, ns.kafka.topics.embedded, lambda v: len(v) >= 10, timeout=120)
    finally:
        ns.stop_workers()
    assert len(frames) == 10, ns.logs()
    got = {r.event_id: v for r, v in (decode_with_vector(f, InteractionEvent) for f in frames)}
    expected = Embedder().embed([e.text for e in events])
    for event, want in zip(events, expected):
        vector = got[event.event_id]
        assert vector.dtype == np.float32 and vector.shape == (384,)
        assert float(vector @ want) >= 0.9999


async def test_three_topics_segment_at_the_changes_and_survive_a_restart(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    port = free_port()
    events = session_events("acme", "s1")
    half = len(events) // 2
    seen: list[MemoryUpdate] = []
    try:
        async with subscribe(session_id="s1", kafka=ns.kafka) as updates:
            # the store outlives the worker (as a Qdrant server would); the table state dir does not
            store = {"MEMSTREAM_STORE__PATH": str(tmp_path / "store"), "MEMSTREAM_WORKER__WEB_PORT": str(port)}
            first = ns.start_worker("first", **store)
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(events[:half])
            await wait_for(updates, seen, lambda s: len(indexed(s)) >= half, 180, [first])
            ns.stop_workers()  # a clean restart on a NEW state dir: session state must come from the changelog
            second = ns.start_worker("second", **store)
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many([*events[half:], end_event(events[-1])])
            all_ids = {e.event_id for e in events}
            await wait_for(
                updates, seen, lambda s: {i for ids in sealed(s).values() for i in ids} >= all_ids, 180, [second]
            )

            episodes = sealed(seen)
            assert sorted(episodes) == list(range(len(episodes))), "episode indices restarted: state was lost"
            members = [i for idx in sorted(episodes) for i in episodes[idx]]
            assert members == [e.event_id for e in events], "episodes must partition the session in order"
            starts = [events.index(next(e for e in events if e.event_id == episodes[idx][0])) for idx in episodes][1:]
            radius = 4
            for change in (12, 24):
                assert any(abs(s - change) <= radius for s in starts), f"no boundary near {change}: {starts}"

            async with aiohttp.ClientSession() as http:
                body = {
                    "query": "planets, stars and telescopes",
                    "tenant_id": "acme",
                    "k_s": 1,
                    "k_c": 0,
                    "mode": "episodes",
                }
                async with http.post(f"http://127.0.0.1:{port}/recall/", json=body) as response:
                    assert response.status == 200
                    hits = (await response.json())["episodes"]
                events_body = {"query": "planets, stars and telescopes", "tenant_id": "acme", "budget": 6}
                async with http.post(f"http://127.0.0.1:{port}/recall/", json=events_body) as response:
                    assert response.status == 200
                    recalled = (await response.json())["events"]
                async with http.post(f"http://127.0.0.1:{port}/recall/", json={**body, "tenant_id": "other"}) as r:
                    assert (await r.json())["episodes"] == []
                async with http.post(
                    f"http://127.0.0.1:{port}/recall/", json={**events_body, "tenant_id": "other"}
                ) as r:
                    assert (await r.json())["events"] == []
                async with http.post(f"http://127.0.0.1:{port}/recall/", json={"query": "x"}) as r:
                    assert r.status == 400
            astronomy = {e.event_id for e in events[:12]}
            assert hits and sum(ev["event_id"] in astronomy for ev in hits[0]["events"]) > len(hits[0]["events"]) / 2
            # event mode: exactly the budget, best first, mostly astronomy, each with its sealed episode
            assert len(recalled) == 6 and len({e["event_id"] for e in recalled}) == 6
            assert sum(e["event_id"] in astronomy for e in recalled) >= 4, recalled
            scores = [e["score"] for e in recalled]
            assert scores == sorted(scores, reverse=True)
            assert all(e["session_id"] == "s1" and e["episode_index"] in episodes for e in recalled), recalled

            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "memstream.cli",
                "recall",
                "bread dough and ovens",
                "--tenant",
                "acme",
                "--mode",
                "episodes",
                "--k-s",
                "1",
                "--k-c",
                "0",
                "--json",
                "--worker",
                f"http://127.0.0.1:{port}",
                stdout=asyncio.subprocess.PIPE,
            )
            stdout, _ = await cli.communicate()
            assert cli.returncode == 0
            (episode,) = json.loads(stdout)
            baking = {e.event_id for e in events[12:24]}
            assert sum(ev["event_id"] in baking for ev in episode["events"]) > len(episode["events"]) / 2
    finally:
        ns.stop_workers()
        print(ns.logs()[-4000:])


async def test_blend_surprise_segments_with_the_language_model(kafka_bootstrap, tmp_path):
    """surprise=blend: the segment stage runs the ONNX language model on each batch of events in its own
    thread, alongside the embedding surprise; the session is still cut into ordered, complete episodes."""
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    events = session_events("acme", "lm1")
    seen: list[MemoryUpdate] = []
    try:
        async with subscribe(session_id="lm1", kafka=ns.kafka) as updates:
            worker = ns.start_worker(
                "lm",
                loglevel="info",
                MEMSTREAM_SEGMENTATION__SURPRISE="blend",
                MEMSTREAM_STORE__PATH=str(tmp_path / "store"),
            )
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many([*events, end_event(events[-1])])
            all_ids = {e.event_id for e in events}
            await wait_for(
                updates, seen, lambda s: {i for ids in sealed(s).values() for i in ids} >= all_ids, 240, [worker]
            )
        episodes = sealed(seen)
        assert sorted(episodes) == list(range(len(episodes)))
        assert [i for idx in sorted(episodes) for i in episodes[idx]] == [e.event_id for e in events]
        assert len(episodes) >= 2, episodes  # three topics: the session is not one episode
        assert "language model smollm2-135m" in ns.logs(), "the LM was not loaded"
    finally:
        ns.stop_workers()


async def _replay_from_the_start(ns: Namespace, lose_topic: str) -> None:
    """What a worker killed between two changelog writes leaves: ``lose_topic`` (a changelog) without its
    latest writes, and the input read again. Here: that changelog deleted, the group's offsets on
    `embedded` back at 0. No worker may run."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata

    from memstream.streams.admin import admin_client, delete_topics

    assert await delete_topics(ns.kafka, lambda name: name == lose_topic) == [lose_topic]
    deadline = time.monotonic() + 30
    async with admin_client(ns.kafka) as admin:
        while lose_topic in await admin.list_topics():  # deleted asynchronously by the broker
            assert time.monotonic() < deadline, f"{lose_topic} was not deleted"
            await asyncio.sleep(0.5)
    consumer = AIOKafkaConsumer(**ns.kafka.client_kwargs(), group_id=ns.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(ns.kafka.topics.embedded, p) for p in range(ns.kafka.partitions)]
        consumer.assign(tps)
        while True:  # the group must be empty: a worker that did not leave it is dropped after its session timeout
            try:
                await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
                break
            except KafkaError:
                assert time.monotonic() < deadline + 60, "the group's offsets could not be reset"
                await asyncio.sleep(1)
    finally:
        await consumer.stop()


async def test_an_idle_session_is_sealed_even_when_its_activity_was_lost_before_a_replay(kafka_bootstrap, tmp_path):
    """Idle sealing, and the replay case: the segment state (one changelog) reached Kafka, the session's
    activity record (another) did not. The replayed events are not applied again, but they must bring the
    activity back, or the session's open episode would never be sealed."""
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    events = session_events("acme", "idle")[:10]  # one topic, no session_end: only idleness can seal it
    ids = [e.event_id for e in events]
    seen: list[MemoryUpdate] = []
    try:
        async with subscribe(session_id="idle", kafka=ns.kafka) as updates:
            first = ns.start_worker("first", MEMSTREAM_SEGMENT__IDLE_SEAL_S="600")
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(events)
            await wait_for(updates, seen, lambda s: len(indexed(s)) >= len(events), 180, [first])
            ns.stop_workers()
            assert not sealed(seen)

            await _replay_from_the_start(ns, f"{ns.app_id}-{ns.app_id}-segment-activity-changelog")
            seen.clear()
            second = ns.start_worker(
                "second", MEMSTREAM_SEGMENT__IDLE_SEAL_S="2", MEMSTREAM_SEGMENT__IDLE_CHECK_S="0.5"
            )
            await wait_for(
                updates, seen, lambda s: {i for ep in sealed(s).values() for i in ep} >= set(ids), 120, [second]
            )
            assert [i for idx in sorted(sealed(seen)) for i in sealed(seen)[idx]] == ids  # in order, each once
            # the backlog was there when the worker started: nothing fetched before faust's seek to the
            # committed offsets may be processed a second time after it (agents/faust_compat.py holds the fetcher)
            replays = sorted(u.ids[0] for u in seen if u.kind == UpdateKind.EVENT_INDEXED)
            assert replays == ids, f"replayed more than once: {replays}"
    finally:
        ns.stop_workers()
        print(ns.logs()[-4000:])
