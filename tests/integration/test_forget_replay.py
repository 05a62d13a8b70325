"""Forget survives replay (issue 14, part 4), on the real broker: publish two users' events, forget one, then
replay every topic from offset 0 in a new consumer group into a new store — nothing of the forgotten user
comes back, the other user's memory is intact, and what the forgotten user does afterwards is remembered."""

from __future__ import annotations

import asyncio
import time

import pytest

from memstream.streams.client import Publisher, subscribe
from memstream.streams.contracts import InteractionEvent, UpdateKind
from memstream.streams.memory_client import AsyncMemoryClient
from tests.integration.faults_util import store_counts
from tests.integration.harness import Namespace

pytestmark = pytest.mark.integration


def _events(user: str, n: int, t0: float) -> list[InteractionEvent]:
    return [
        InteractionEvent(
            event_id=f"{user}-{t0:.0f}-{i}",
            tenant_id="acme",
            user_id=user,
            session_id=f"{user}-s{t0:.0f}",
            ts=t0 + i,
            text=f"{user} talks about topic {i % 3}",
        )
        for i in range(n)
    ]


async def _indexed(updates, ids: set[str], ns: Namespace, timeout: float = 120) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not ids <= seen:
        assert time.monotonic() < deadline, f"{len(ids - seen)} never indexed:\n{ns.logs()}"
        seen |= {u.ids[0] for u in await updates.poll(1.0) if u.kind == UpdateKind.EVENT_INDEXED}


async def test_a_forgotten_user_does_not_come_back_on_replay(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    now = time.time()
    alice, bob = _events("alice", 12, now - 100), _events("bob", 12, now - 100)
    async with subscribe(kafka=ns.kafka, from_beginning=True) as updates:
        ns.start_worker("w1")
        async with Publisher(ns.kafka) as pub:
            await pub.publish_many(alice + bob)
        await _indexed(updates, {e.event_id for e in alice + bob}, ns)
        async with AsyncMemoryClient(f"http://127.0.0.1:{ns.ports['w1']}") as memory:
            assert await memory.forget(tenant_id="acme", user_id="alice") > 0
        await asyncio.sleep(0.1)
        later = _events("alice", 3, time.time() + 1)  # alice comes back after the forget
        async with Publisher(ns.kafka) as pub:
            await pub.publish_many(later)
        await _indexed(updates, {e.event_id for e in later}, ns)
    ns.stop_workers()

    # replay: a new consumer group (app id) reads every topic from offset 0 into a new store (new state dir)
    async with subscribe(kafka=ns.kafka, from_beginning=False) as updates:
        ns.start_worker("w2", MEMSTREAM_WORKER__APP_ID=f"{ns.app_id}-replay")
        await _indexed(updates, {e.event_id for e in bob + later}, ns)
        replayed = {u.ids[0] for u in await updates.poll(3.0) if u.kind == UpdateKind.EVENT_INDEXED}
    ns.stop_workers()
    assert not replayed & {e.event_id for e in alice}, "the forgotten user's past came back"
    counts = await store_counts(tmp_path / "w2", ["acme"])
    assert counts["acme"][0] == len(bob) + len(later), (counts, ns.logs())
