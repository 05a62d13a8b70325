"""A tenant with only an API key, no Kafka credentials: publishes through POST /events/ and follows its
memory through subscribe(url=, key=) (GET /updates/), then recalls — on the real broker."""

from __future__ import annotations

import asyncio
import time

import pytest

from memstream.streams.client import subscribe
from memstream.streams.contracts import UpdateKind
from memstream.streams.memory_client import AsyncMemoryClient, MemoryApiError
from tests.integration.harness import Namespace

pytestmark = pytest.mark.integration

TEXTS = ["Book a table for Friday at the Italian place.", "Make it for four people.", "Around eight please."]


def _events(session: str) -> list[dict]:
    return [
        {"event_id": f"{session}-{i}", "user_id": "alice", "session_id": session, "ts": 1_764_000_000 + i, "text": t}
        for i, t in enumerate(TEXTS)
    ]


async def test_publish_subscribe_and_recall_with_an_api_key_only(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path, MEMSTREAM_AUTH__MODE="keys")
    await ns.create_topics()
    acme = await ns.create_key("acme", ["read", "write"])
    other = await ns.create_key("globex", ["read", "write"])
    ns.start_worker("w1")
    url = f"http://127.0.0.1:{ns.ports['w1']}"
    async with AsyncMemoryClient(url, key=acme) as memory, AsyncMemoryClient(url, key=other) as rival:
        deadline = time.monotonic() + 90
        while True:  # the worker answers 503 until it has started and read the access topic
            try:
                await memory.health()
                await memory.get(event_ids=["none"])
                break
            except Exception:
                assert time.monotonic() < deadline, ns.logs()
                assert ns.workers[0].poll() is None, ns.logs()
                await asyncio.sleep(0.5)
        async with subscribe(url=url, key=acme) as mine, subscribe(url=url, key=other) as theirs:
            assert await memory.publish(_events("s1")) == 3
            assert await rival.publish([{**e, "user_id": "bob"} for e in _events("s9")]) == 3
            seen, rival_seen = [], []
            while len({u.ids[0] for u in seen if u.kind == UpdateKind.EVENT_INDEXED}) < 3:
                assert time.monotonic() < deadline, ns.logs()
                seen += await mine.poll(1.0)
            rival_seen += await theirs.poll(2.0)
        assert {u.tenant_id for u in seen} == {"acme"}  # filtered on the worker: globex's updates never arrive
        assert rival_seen and {u.tenant_id for u in rival_seen} == {"globex"}
        found = await memory.recall("dinner reservation for Friday", budget=10)
        assert {e["event_id"] for e in found} == {"s1-0", "s1-1", "s1-2"}
        with pytest.raises(MemoryApiError) as refused:
            await memory.publish([{**_events("s2")[0], "tenant_id": "globex"}])
        assert refused.value.status == 403
    ns.stop_workers()
